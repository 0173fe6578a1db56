//! `peerauth check` / `peerauth describe` for a step, through the CLI's own library:
//! exactly what the `peerauth` binary prints.

use clap::Parser;
use std::path::Path;

/// One CLI run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The command line, as a user would type it.
    pub command: String,
    pub exit: u8,
    pub output: String,
}

/// `relative` (a path inside `repo`) as the CLI should be given it: relative when the
/// process runs at the repository root, as a user would type it, else absolute.
pub fn path_for_cli(repo: &Path, relative: &str) -> String {
    let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.canonicalize().ok());
    if cwd.as_deref() == Some(repo.as_path()) {
        relative.to_string()
    } else {
        repo.join(relative).display().to_string()
    }
}

/// Run `peerauth <args>` (the arguments after the program name).
pub fn peerauth(args: &[&str]) -> Explanation {
    let command = format!("peerauth {}", args.join(" "));
    let argv = std::iter::once("peerauth").chain(args.iter().copied());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = match peerauth_cli::cli::Cli::try_parse_from(argv) {
        Ok(cli) => peerauth_cli::run(&cli, &mut std::io::empty(), &mut out, &mut err)
            .unwrap_or(peerauth_cli::EXIT_INPUT),
        Err(e) => {
            err.extend_from_slice(e.to_string().as_bytes());
            peerauth_cli::EXIT_INPUT
        }
    };
    let mut output = String::from_utf8_lossy(&out).into_owned();
    output.push_str(&String::from_utf8_lossy(&err));
    Explanation {
        command,
        exit,
        output,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn check_explains_why_the_hipster_shop_exception_selects_no_pod() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/lab/scenarios/hipster-shop-exception"
        );
        let e = peerauth(&["check", dir]);
        assert!(
            e.output.contains("pa-selector-matches-no-workload"),
            "{}",
            e.output
        );
        assert!(
            e.output.contains("frontend.hipstershopv1v2:80 are reset"),
            "{}",
            e.output
        );
        assert!(e.command.starts_with("peerauth check "));
    }

    #[test]
    fn describe_shows_catalogdetail_strict_from_the_mesh_policy() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../manifests/lab/scenarios/catalog-strict"
        );
        let e = peerauth(&["describe", "workshop/catalogdetail", "-f", dir]);
        assert!(e.output.contains("STRICT"), "{}", e.output);
        assert!(
            e.output
                .contains("Applied PeerAuthentication:\n   default.istio-system"),
            "{}",
            e.output
        );
    }
}
