//! Running the real `peerauth` binary from the workspace root, so paths in its
//! output are the short `manifests/...` ones a user would type.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The workspace root (`cli/..`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn peerauth(args: &[&str]) -> Output {
    peerauth_with_stdin(args, "")
}

pub fn peerauth_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerauth"))
        .args(args)
        // The matrix's view depends on the terminal width; tests see none.
        .env_remove("COLUMNS")
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run peerauth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().expect("peerauth exited by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Run with `--json` appended and parse stdout into the documented type.
pub fn json<T: serde::de::DeserializeOwned>(args: &[&str]) -> (i32, T) {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = peerauth(&all);
    let doc = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: not a peerauth/v1 document:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    });
    (out.code, doc)
}

/// Compare `actual` with `cli/tests/snapshots/<name>`; `PEERAUTH_BLESS=1` rewrites it.
pub fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("PEERAUTH_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with PEERAUTH_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "output differs from {} (PEERAUTH_BLESS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// The seed lab's workloads plus one step's folder.
pub fn step_files(step: &str) -> Vec<String> {
    vec![
        "-f".into(),
        "manifests/workloads".into(),
        "-f".into(),
        format!("manifests/steps/{step}"),
    ]
}

/// A scratch directory unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peerauth-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
