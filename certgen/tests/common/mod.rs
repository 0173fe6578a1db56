//! Helpers shared by the integration tests: run the real binary and openssl.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use assert_cmd::Command as Bin;

pub fn certgen(dir: &Path) -> Bin {
    let mut c = Bin::cargo_bin("certgen").unwrap();
    c.current_dir(dir);
    c
}

/// Runs certgen in `dir`, asserts success, returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = certgen(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "certgen {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs certgen in `dir` expecting exit code `code`; returns stderr.
pub fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = certgen(dir).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "certgen {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(dir, &a)).unwrap()
}

/// Runs openssl; returns (success, stdout + stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// With openssl alone: an EC P-256 key `<name>.key` and CSR for `subject`, signed
/// by the CA `ca` = (certificate, key) into `<name>.pem`, with `extfile`'s
/// extensions when given.
pub fn openssl_issue(
    dir: &Path,
    name: &str,
    subject: &str,
    ca: (&str, &str),
    days: &str,
    extfile: Option<&str>,
) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let (ok, out) = openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            subject,
            "-out",
            &csr,
        ],
    );
    assert!(ok, "{out}");
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        ca.0,
        "-CAkey",
        ca.1,
        "-CAcreateserial",
        "-days",
        days,
        "-out",
        &pem,
    ];
    if let Some(ext) = extfile {
        args.extend(["-extfile", ext]);
    }
    let (ok, out) = openssl(dir, &args);
    assert!(ok, "{out}");
}

#[cfg(unix)]
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A root in `dir/certs` and cluster `c1`'s intermediate in `dir/certs/c1`.
pub fn mesh_ca(dir: &Path) {
    ok(dir, &["root"]);
    ok(dir, &["intermediate", "--cluster", "c1"]);
}

pub fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// The `data:` entries of a Secret YAML, base64-decoded.
pub fn secret_data(yaml: &str) -> Vec<(String, String)> {
    use base64::Engine;
    let mut in_data = false;
    let mut out = Vec::new();
    for line in yaml.lines() {
        if line == "data:" {
            in_data = true;
            continue;
        }
        if in_data {
            let (k, v) = line.trim().split_once(": ").unwrap();
            let bytes = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
            out.push((k.to_string(), String::from_utf8(bytes).unwrap()));
        }
    }
    out
}
