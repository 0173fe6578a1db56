//! `inspect` and `verify` on what a real Envoy (the `envoy` on PATH) prints
//! at its admin `/config_dump`, holding certificates certgen wrote: static
//! secrets from files and inline bytes (`static_secrets`), and SDS secrets
//! named as Istio names them (`default`, `ROOTCA`) loaded from files, which
//! Envoy reports as `dynamic_active_secrets`. Envoy's TLS listener also
//! serves the `default` chain, so what certgen reads from the dump is
//! compared with what crosses the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::Value;
use tempfile::tempdir;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Kills the Envoy it holds when the test ends, passing or not.
struct Envoy {
    child: Child,
    admin: u16,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl on PATH");
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// Starts Envoy on `bootstrap` (whose admin listens on `admin`) and waits until it is LIVE.
fn start(dir: &Path, bootstrap: &str, admin: u16) -> Envoy {
    let path = dir.join("bootstrap.yaml");
    std::fs::write(&path, bootstrap).unwrap();
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    let child = Command::new("envoy")
        .arg("-c")
        .arg(&path)
        .args(["--disable-hot-restart", "-l", "warning"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("envoy on PATH (make setup installs it)");
    let envoy = Envoy { child, admin };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if get(admin, "/ready").is_some_and(|r| r.trim() == "LIVE") {
            return envoy;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "envoy did not become ready: {}",
        read(dir.join("envoy.log"))
    );
}

fn issue(dir: &Path) -> String {
    mesh_ca(dir);
    ok(
        dir,
        &[
            "workload",
            "--ca",
            "certs/c1",
            "--namespace",
            "foo",
            "--service-account",
            "httpbin",
            "--out",
            "wl",
        ],
    );
    // What an Istio sidecar presents: leaf, intermediate, root.
    let chain = format!(
        "{}{}",
        read(dir.join("wl/cert.pem")),
        read(dir.join("wl/chain.pem"))
    );
    std::fs::write(dir.join("presented.pem"), &chain).unwrap();
    chain
}

fn fingerprint(dir: &Path, pem: &str) -> String {
    let (ok, fp) = openssl(
        dir,
        &["x509", "-in", pem, "-noout", "-fingerprint", "-sha256"],
    );
    assert!(ok, "{fp}");
    fp.trim().split_once('=').unwrap().1.to_string()
}

fn verify_json(dir: &Path, args: &[&str], code: i32) -> Value {
    let mut a = vec!["verify"];
    a.extend_from_slice(args);
    a.push("--json");
    let out = certgen(dir).args(&a).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "certgen {a:?}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status<'a>(workload: &'a Value, code: &str) -> &'a Value {
    &workload["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == code)
        .unwrap_or_else(|| panic!("no check {code} in {workload}"))["status"]
}

/// The secret named `name` in Envoy's SecretsConfigDump list `list`.
fn envoy_secret<'a>(dump: &'a Value, list: &str, name: &str) -> &'a Value {
    let secrets = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.SecretsConfigDump")
        .unwrap_or_else(|| panic!("no SecretsConfigDump in {dump}"));
    secrets[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {secrets}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[test]
fn real_envoy_sds_secrets_default_and_rootca_verify_and_match_the_certificate_on_the_wire() {
    let t = tempdir().unwrap();
    let d = t.path();
    let chain = issue(d);
    let sds = |name: &str, body: String| {
        let file = d.join(format!("sds-{name}.yaml"));
        std::fs::write(
            &file,
            format!(
                "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: {name}\n{body}"
            ),
        )
        .unwrap();
        file.display().to_string()
    };
    let default = sds(
        "default",
        format!(
            "  tls_certificate:\n    certificate_chain: {{inline_bytes: \"{}\"}}\n    private_key: {{inline_bytes: \"{}\"}}\n",
            B64.encode(&chain),
            B64.encode(read(d.join("wl/key.pem")))
        ),
    );
    let rootca = sds(
        "ROOTCA",
        format!(
            "  validation_context:\n    trusted_ca: {{inline_bytes: \"{}\"}}\n",
            B64.encode(read(d.join("certs/root-cert.pem")))
        ),
    );
    let (admin, tls) = (free_port(), free_port());
    let bootstrap = format!(
        r#"node: {{id: "sidecar~127.0.0.1~httpbin.foo~foo.svc.cluster.local", cluster: httpbin.foo}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: {tls}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.echo
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: false
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: default
              sds_config: {{path_config_source: {{path: "{default}"}}, resource_api_version: V3}}
            validation_context_sds_secret_config:
              name: ROOTCA
              sds_config: {{path_config_source: {{path: "{rootca}"}}, resource_api_version: V3}}
"#
    );
    let envoy = start(d, &bootstrap, admin);
    for (file, path) in [
        ("config_dump.json", "/config_dump"),
        ("include_eds.json", "/config_dump?include_eds"),
        (
            "active.json",
            "/config_dump?resource=dynamic_active_secrets",
        ),
    ] {
        let body = get(envoy.admin, path).unwrap_or_else(|| panic!("GET {path} failed"));
        std::fs::write(d.join(file), body).unwrap();
    }
    // What Envoy printed, read with serde_json alone: the key is the bytes `[redacted]`.
    let dump: Value = serde_json::from_str(&read(d.join("config_dump.json"))).unwrap();
    let default_secret = envoy_secret(&dump, "dynamic_active_secrets", "default");
    assert_eq!(
        default_secret["secret"]["tls_certificate"]["private_key"]["inline_bytes"],
        B64.encode("[redacted]")
    );

    // What Envoy serves on the wire.
    let (ok_tls, wire) = openssl(
        d,
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{tls}"),
            "-showcerts",
        ],
    );
    assert!(
        wire.contains("-----BEGIN CERTIFICATE-----"),
        "{ok_tls} {wire}"
    );
    let first = &wire[wire.find("-----BEGIN CERTIFICATE-----").unwrap()..];
    let end = first.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    std::fs::write(d.join("wire.pem"), format!("{}\n", &first[..end])).unwrap();
    let on_wire = fingerprint(d, "wire.pem");
    assert_eq!(on_wire, fingerprint(d, "wl/cert.pem"));
    drop(envoy);

    for file in ["config_dump.json", "include_eds.json", "active.json"] {
        let r = verify_json(d, &[file, "--expect-identity", "foo/httpbin"], 0);
        assert_eq!(r["format"], "envoy-config-dump", "{file}");
        let w = &r["workloads"][0];
        assert_eq!(w["spiffe_id"], "spiffe://cluster.local/ns/foo/sa/httpbin");
        for code in [
            "chain-signatures",
            "trust-anchor",
            "expiry",
            "private-key",
            "expect-identity",
        ] {
            assert_eq!(status(w, code), "pass", "{file} {code}: {w}");
        }
        let v = json(d, &["inspect", file]);
        assert_eq!(v[0]["sha256_fingerprint"], on_wire, "{file}");
        assert_eq!(v[0]["source"]["private_key"], "redacted");
        let root = v
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"]["secret"] == "ROOTCA")
            .unwrap();
        assert_eq!(
            root["sha256_fingerprint"],
            fingerprint(d, "certs/root-cert.pem")
        );
    }
    let r = verify_json(
        d,
        &["config_dump.json", "--expect-identity", "foo/sleep"],
        1,
    );
    assert_eq!(status(&r["workloads"][0], "expect-identity"), "fail");
}

#[test]
fn real_envoy_static_secrets_from_files_and_inline_bytes_verify() {
    let t = tempdir().unwrap();
    let d = t.path();
    issue(d);
    let admin = free_port();
    let bootstrap = format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  secrets:
  - name: default
    tls_certificate:
      certificate_chain: {{filename: "{chain}"}}
      private_key: {{filename: "{key}"}}
  - name: ROOTCA
    validation_context:
      trusted_ca: {{inline_bytes: "{root}"}}
"#,
        chain = d.join("presented.pem").display(),
        key = d.join("wl/key.pem").display(),
        root = B64.encode(read(d.join("certs/root-cert.pem"))),
    );
    let envoy = start(d, &bootstrap, admin);
    let body = get(envoy.admin, "/config_dump").unwrap();
    std::fs::write(d.join("config_dump.json"), &body).unwrap();
    let static_only = get(envoy.admin, "/config_dump?resource=static_secrets").unwrap();
    std::fs::write(d.join("static.json"), &static_only).unwrap();
    drop(envoy);

    // Envoy names the file rather than dumping it, and redacts the key's file name.
    let dump: Value = serde_json::from_str(&body).unwrap();
    let s = envoy_secret(&dump, "static_secrets", "default");
    assert_eq!(
        s["secret"]["tls_certificate"]["certificate_chain"]["filename"],
        d.join("presented.pem").display().to_string()
    );
    assert_eq!(
        s["secret"]["tls_certificate"]["private_key"]["filename"],
        "[redacted]"
    );
    for file in ["config_dump.json", "static.json"] {
        let r = verify_json(d, &[file, "--expect-identity", "foo/httpbin"], 0);
        let w = &r["workloads"][0];
        assert_eq!(status(w, "trust-anchor"), "pass", "{file}: {w}");
        assert_eq!(status(w, "private-key"), "pass", "{file}: {w}");
        let v = json(d, &["inspect", file]);
        assert_eq!(v[0]["source"]["state"], "static");
        assert_eq!(v[0]["sha256_fingerprint"], fingerprint(d, "wl/cert.pem"));
    }
    // The file Envoy names is gone: a one-line error that says so.
    std::fs::remove_file(d.join("presented.pem")).unwrap();
    let err = fails(d, &["verify", "config_dump.json"], 2);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("which cannot be read here"), "{err}");
}
