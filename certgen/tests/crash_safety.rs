//! certgen's output folders survive crashes and concurrent runs: the real
//! binary is killed at random points while it writes, killed by the kernel at
//! the exact write that exceeds a file-size limit, and run many times at once
//! into one folder. After each, every output folder must be absent, exactly as
//! it was, or complete and consistent (each key belongs to its certificate,
//! the chain starts with the certificate, keys are mode 0600).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ok;
use tempfile::tempdir;

/// A folder's files: name -> (bytes, mode).
type Snapshot = BTreeMap<String, (Vec<u8>, u32)>;

fn snapshot(dir: &Path) -> Option<Snapshot> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut out = Snapshot::new();
    for e in entries {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        assert!(meta.is_file(), "{}: unexpected entry", e.path().display());
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            (
                std::fs::read(e.path()).unwrap(),
                meta.permissions().mode() & 0o777,
            ),
        );
    }
    Some(out)
}

/// The names of a complete set, its certificate, its key and its chain.
struct Layout {
    files: &'static [&'static str],
    cert: &'static str,
    key: &'static str,
    chain: &'static str,
    /// Whether the chain file starts with the certificate itself (Istio's
    /// `cert-chain.pem`) or with its issuer (a workload's `chain.pem`).
    chain_has_cert: bool,
}

const INTERMEDIATE: Layout = Layout {
    files: &[
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ],
    cert: "ca-cert.pem",
    key: "ca-key.pem",
    chain: "cert-chain.pem",
    chain_has_cert: true,
};

const WORKLOAD: Layout = Layout {
    files: &["cert.pem", "chain.pem", "key.pem", "root-cert.pem"],
    cert: "cert.pem",
    key: "key.pem",
    chain: "chain.pem",
    chain_has_cert: false,
};

fn first_der(pem_text: &[u8]) -> Vec<u8> {
    pem::parse_many(pem_text).unwrap()[0].contents().to_vec()
}

/// Asserts `s` is one whole set written by one run, and returns its certificate.
fn assert_complete(s: &Snapshot, layout: &Layout, root_pem: &[u8], what: &str) -> Vec<u8> {
    let names: Vec<&str> = s.keys().map(String::as_str).collect();
    assert_eq!(names, layout.files, "{what}: not exactly the set");
    let cert = first_der(&s[layout.cert].0);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let key_pem = String::from_utf8(s[layout.key].0.clone()).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    assert_eq!(
        rcgen::PublicKeyData::subject_public_key_info(&key),
        parsed.tbs_certificate.subject_pki.raw,
        "{what}: the key is not the certificate's (a mixed set)"
    );
    let chain_first = first_der(&s[layout.chain].0);
    if layout.chain_has_cert {
        assert_eq!(
            chain_first, cert,
            "{what}: the chain does not start with the certificate"
        );
    } else {
        let (_, issuer) = x509_parser::parse_x509_certificate(&chain_first).unwrap();
        assert_eq!(
            issuer.subject(),
            parsed.issuer(),
            "{what}: the chain does not start with the issuer"
        );
    }
    assert_eq!(s["root-cert.pem"].0, root_pem, "{what}: another root");
    assert_eq!(s[layout.key].1, 0o600, "{what}: key mode");
    for (name, (_, mode)) in s {
        assert_eq!(mode & 0o022, 0, "{what}: {name} writable by others");
    }
    cert
}

fn certgen_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("certgen")
}

/// What a kill left: the hidden staging folders next to `dir`, whose key files
/// must still be private.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let parent = dir.parent().unwrap();
    let prefix = format!(".{}.certgen-", dir.file_name().unwrap().to_string_lossy());
    let found: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    for staging in &found {
        for e in std::fs::read_dir(staging).into_iter().flatten() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains("key") {
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "staged {name} readable by others");
            }
        }
    }
    found
}

/// A small xorshift, so a failure's seed can be replayed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// Runs certgen with `args` in `dir`, killing it after `after` (if still running).
fn run_and_kill(dir: &Path, args: &[&str], after: Duration) {
    let mut child = Command::new(certgen_bin())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.kill();
    child.wait().unwrap();
}

fn time_of(dir: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    ok(dir, args);
    start.elapsed()
}

#[test]
fn a_certgen_killed_at_random_points_leaves_each_folder_absent_as_before_or_complete() {
    let seed = seed();
    eprintln!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root"]);
    ok(d, &["intermediate", "--root", "certs", "--cluster", "base"]);
    let root_pem = std::fs::read(d.join("certs/root-cert.pem")).unwrap();
    let workload = |sa: &str| {
        vec![
            "workload".to_string(),
            "--ca".into(),
            "certs/base".into(),
            "--namespace".into(),
            "default".into(),
            "--service-account".into(),
            sa.to_string(),
            "--out".into(),
            "w".into(),
            "--force".into(),
        ]
    };
    let args = workload("first");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t_workload = time_of(d, &args);
    let t_intermediate = time_of(
        d,
        &["intermediate", "--root", "certs", "--cluster", "timing"],
    );

    let (mut absent, mut before, mut complete, mut mid_write) = (0, 0, 0, 0);
    let mut round = 0;
    // Until enough kills landed inside the write itself (a staging folder left
    // behind) to show the window was hit, with a floor and a ceiling of rounds.
    while round < 40 || (mid_write < 5 && round < 400) {
        round += 1;
        if round % 2 == 0 {
            // A new folder: absent or complete.
            let cluster = format!("c{round}");
            let dir = d.join("certs").join(&cluster);
            let limit = t_intermediate.as_micros() as u64 * 3 / 2;
            let after = Duration::from_micros(rng.below(limit));
            run_and_kill(
                d,
                &["intermediate", "--root", "certs", "--cluster", &cluster],
                after,
            );
            mid_write += usize::from(!leftovers(&dir).is_empty());
            match snapshot(&dir) {
                None => absent += 1,
                Some(s) => {
                    assert_complete(&s, &INTERMEDIATE, &root_pem, &cluster);
                    complete += 1;
                }
            }
        } else {
            // An existing folder overwritten with --force: as before or complete.
            let dir = d.join("w");
            let old = snapshot(&dir).unwrap();
            assert_complete(&old, &WORKLOAD, &root_pem, "w before");
            let args = workload(&format!("sa{round}"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let limit = t_workload.as_micros() as u64 * 3 / 2;
            let after = Duration::from_micros(rng.below(limit));
            run_and_kill(d, &args, after);
            mid_write += usize::from(!leftovers(&dir).is_empty());
            let now = snapshot(&dir).expect("an existing folder never disappears");
            if now == old {
                before += 1;
            } else {
                assert_complete(&now, &WORKLOAD, &root_pem, &format!("w round {round}"));
                complete += 1;
            }
        }
    }
    eprintln!(
        "{round} kills: {absent} absent, {before} as before, {complete} complete; \
         {mid_write} left a staging folder (killed mid-write)"
    );
    assert!(
        mid_write > 0,
        "no kill landed inside a write in {round} rounds"
    );
    assert!(absent + before > 0 && complete > 0, "kills all on one side");

    // The next run clears what killed runs left and writes normally.
    let args = workload("after");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(d, &args);
    assert!(leftovers(&d.join("w")).is_empty());
    assert_complete(
        &snapshot(&d.join("w")).unwrap(),
        &WORKLOAD,
        &root_pem,
        "w after",
    );
}

/// `ulimit -f` makes the kernel kill certgen (SIGXFSZ) at the first write past
/// the limit: a crash at exactly a file write, for each limit.
#[test]
fn certgen_killed_by_the_kernel_in_the_middle_of_a_file_leaves_no_partial_set() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root"]);
    ok(d, &["intermediate", "--root", "certs", "--cluster", "base"]);
    let root_pem = std::fs::read(d.join("certs/root-cert.pem")).unwrap();
    ok(
        d,
        &[
            "workload",
            "--ca",
            "certs/base",
            "--namespace",
            "default",
            "--service-account",
            "old",
            "--out",
            "w",
        ],
    );
    let old = snapshot(&d.join("w")).unwrap();
    let mut killed = 0;
    // POSIX `ulimit -f` counts 512-byte blocks; the files are ~0.2-1.5 KB.
    for blocks in 0..4 {
        for (args, dir) in [
            (
                format!("intermediate --root certs --cluster k{blocks}"),
                d.join(format!("certs/k{blocks}")),
            ),
            (
                "workload --ca certs/base --namespace default --service-account new --out w --force".to_string(),
                d.join("w"),
            ),
        ] {
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!("ulimit -f {blocks} && exec \"$0\" {args}"))
                .arg(certgen_bin())
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if !status.success() {
                killed += 1;
            }
            let what = format!("{args} with {blocks} blocks");
            match snapshot(&dir) {
                None => assert!(!status.success(), "{what}: succeeded without output"),
                Some(s) if dir.ends_with("w") && s == old => {
                    assert!(!status.success(), "{what}: succeeded but wrote nothing")
                }
                Some(s) => {
                    let layout = if dir.ends_with("w") {
                        &WORKLOAD
                    } else {
                        &INTERMEDIATE
                    };
                    assert!(status.success(), "{what}: failed yet replaced the folder");
                    assert_complete(&s, layout, &root_pem, &what);
                }
            }
        }
    }
    assert!(killed >= 4, "the limit killed only {killed} runs");
}

/// Runs `n` certgen processes at once, each with its own service account.
fn race(dir: &Path, n: usize, force: bool) -> Vec<bool> {
    let children: Vec<_> = (0..n)
        .map(|i| {
            let sa = format!("sa{i}");
            let mut args = vec![
                "workload",
                "--ca",
                "certs/base",
                "--namespace",
                "default",
                "--service-account",
                &sa,
                "--out",
                "w",
            ];
            if force {
                args.push("--force");
            }
            Command::new(certgen_bin())
                .args(&args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("already exists") && err.contains("--force"),
                    "a losing run must say the file exists: {err}"
                );
                assert_eq!(out.status.code(), Some(2));
            }
            out.status.success()
        })
        .collect()
}

fn san_of(s: &Snapshot) -> String {
    let cert = first_der(&s["cert.pem"].0);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    format!("{:?}", san.value.general_names)
}

#[test]
fn runs_into_the_same_folder_at_once_never_produce_a_mixed_set() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root"]);
    ok(d, &["intermediate", "--root", "certs", "--cluster", "base"]);
    let root_pem = std::fs::read(d.join("certs/root-cert.pem")).unwrap();
    for round in 0..6 {
        let _ = std::fs::remove_dir_all(d.join("w"));
        // Without --force into a new folder: exactly one run wins.
        let won = race(d, 6, false);
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
        let s = snapshot(&d.join("w")).unwrap();
        assert_complete(&s, &WORKLOAD, &root_pem, "race without --force");
        let winner = won.iter().position(|w| *w).unwrap();
        assert!(
            san_of(&s).contains(&format!("/sa/sa{winner}")),
            "{}",
            san_of(&s)
        );
        // With --force into the existing folder: all succeed, one whole set stays.
        let won = race(d, 6, true);
        assert!(won.iter().all(|w| *w), "round {round}: {won:?}");
        let s = snapshot(&d.join("w")).unwrap();
        assert_complete(&s, &WORKLOAD, &root_pem, "race with --force");
        assert!(leftovers(&d.join("w")).is_empty(), "round {round}");
    }
}

#[test]
fn a_folder_with_other_files_keeps_them_when_the_set_is_replaced() {
    let t = tempdir().unwrap();
    let d = t.path();
    ok(d, &["root"]);
    ok(d, &["intermediate", "--root", "certs", "--cluster", "base"]);
    let root_pem = std::fs::read(d.join("certs/root-cert.pem")).unwrap();
    std::fs::create_dir(d.join("w")).unwrap();
    std::fs::write(d.join("w/notes.txt"), "mine").unwrap();
    let args = [
        "workload",
        "--ca",
        "certs/base",
        "--namespace",
        "default",
        "--service-account",
        "a",
        "--out",
        "w",
    ];
    ok(d, &args);
    let mut s = snapshot(&d.join("w")).unwrap();
    assert_eq!(s.remove("notes.txt").unwrap().0, b"mine");
    assert_complete(&s, &WORKLOAD, &root_pem, "first write");
    let err = common::fails(d, &args, 2);
    assert!(err.contains("already exists"), "{err}");
    let mut with_force = args.to_vec();
    with_force.push("--force");
    ok(d, &with_force);
    let mut s2 = snapshot(&d.join("w")).unwrap();
    assert_eq!(s2.remove("notes.txt").unwrap().0, b"mine");
    assert_complete(&s2, &WORKLOAD, &root_pem, "forced write");
    assert_ne!(s2["key.pem"], s["key.pem"], "a new key");
    assert!(leftovers(&d.join("w")).is_empty());
}
