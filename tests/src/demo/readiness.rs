//! "Safe to go STRICT?": a step's traffic through the audit WasmPlugin
//! (`manifests/wasmplugin/peerauth-audit.yaml`: action audit against STRICT, every
//! sidecar in foo and bar), answered by `peerauth readiness` on what the sidecars
//! really serve — their `/stats/prometheus` before and after the round, the round's
//! part of their logs — and the pods as `kubectl get -o json` would list them.

use crate::demo::pods::PodLab;
use crate::demo::LabError;
use clap::Parser;
use peerauth_cli::readiness::{ReadinessDocument, Verdict};
use std::path::{Path, PathBuf};

/// One server sidecar's answer for one round of calls.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    /// The lab's pod key (`httpbin.foo`).
    pub workload: String,
    /// Per container port the filter counted: (port, mTLS, plaintext, verdict).
    pub ports: Vec<(u32, u64, u64, String)>,
    /// The plaintext sources `peerauth readiness` resolved, as it prints them.
    pub sources: Vec<String>,
}

impl Readiness {
    /// Plaintext requests `peerauth readiness` counted in the round (the audit filter
    /// counts them as `would_reject` against STRICT).
    pub fn plaintext_would_reject(&self) -> u64 {
        self.ports.iter().map(|p| p.2).sum()
    }

    pub fn mtls(&self) -> u64 {
        self.ports.iter().map(|p| p.1).sum()
    }

    /// The container ports the counters carry.
    pub fn ports(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.0.to_string()).collect()
    }

    pub fn verdict(&self) -> String {
        let verdicts: Vec<&str> = self.ports.iter().map(|p| p.3.as_str()).collect();
        match self.plaintext_would_reject() {
            0 => format!("0 plaintext — {}", verdicts.join(", ")),
            n => format!(
                "{n} plaintext request(s) STRICT would refuse, from {} — {}",
                if self.sources.is_empty() {
                    "(no log line)".to_string()
                } else {
                    self.sources.join(", ")
                },
                verdicts.join(", ")
            ),
        }
    }
}

/// One round of the readout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadinessRound {
    pub label: String,
    pub clients: Vec<String>,
    pub servers: Vec<Readiness>,
    /// What the round should show: plaintext is left exactly when a client without a
    /// sidecar still calls.
    pub expect_plaintext: bool,
    /// `peerauth readiness`'s exit code (0 all safe, 1 not).
    pub exit_code: u8,
    /// The migration plan it proposed (PeerAuthentication YAML, empty when nothing
    /// can switch), and whether policy validated it.
    pub plan: String,
    pub plan_validated: bool,
    /// Problems it reported (a scrape without counters, …); none expected.
    pub problems: Vec<String>,
}

impl ReadinessRound {
    pub fn as_expected(&self) -> bool {
        let any_plain = self.servers.iter().any(|r| r.plaintext_would_reject() > 0);
        any_plain == self.expect_plaintext
            && self.servers.iter().all(|r| r.mtls() > 0)
            && self.problems.is_empty()
            && self.exit_code == u8::from(self.expect_plaintext)
            && self.plan_validated
            // Once nothing sends plaintext, the plan switches something.
            && (self.expect_plaintext || !self.plan.is_empty())
    }
}

/// One server's scrapes and log slice for a round.
pub struct Capture {
    pub pod_key: String,
    pub before: String,
    pub after: String,
    pub log: String,
}

/// `/stats/prometheus` of `pod_key`'s sidecar.
pub fn scrape(lab: &PodLab, pod_key: &str) -> Result<String, LabError> {
    let s = lab
        .sidecar(pod_key)
        .ok_or_else(|| LabError::Missing(format!("a running sidecar in {pod_key}")))?;
    let body =
        peerauth_lab::node::admin_get(&s.admin_socket, "/stats/prometheus").map_err(|e| {
            LabError::io(
                format!("GET /stats/prometheus from {pod_key}'s sidecar"),
                &e,
            )
        })?;
    Ok(body)
}

/// The lab's pods, namespaces and Services as `kubectl get … -A -o json` lists
/// them (the fields `peerauth readiness` reads: pod IPs, labels, ports).
pub fn cluster_objects(lab: &PodLab) -> serde_json::Value {
    let topology = lab.topology();
    let mut items = Vec::new();
    let mut namespaces: Vec<&str> = topology.pods.iter().map(|p| p.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    for ns in namespaces {
        items.push(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    for p in &topology.pods {
        let mut labels = p.labels.clone();
        // The label decides injection whatever the namespace says.
        labels.insert("sidecar.istio.io/inject".into(), p.sidecar.to_string());
        let ports: Vec<serde_json::Value> = p
            .container_ports
            .iter()
            .map(|n| serde_json::json!({"containerPort": n}))
            .collect();
        items.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": labels},
            "spec": {"serviceAccountName": p.service_account, "containers": [{"name": "app", "ports": ports}]},
            "status": {"podIP": p.ip.to_string(), "podIPs": [{"ip": p.ip.to_string()}]}
        }));
    }
    for s in &topology.services {
        let ports: Vec<serde_json::Value> = s
            .ports
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "port": p.port, "targetPort": p.target_port}))
            .collect();
        items.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {"selector": s.selector, "ports": ports}
        }));
    }
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::io(format!("write {}", path.display()), &e))
}

/// Run `peerauth readiness` (the CLI's own library) on the captures and the objects.
pub fn run_readiness(
    lab: &PodLab,
    captures: &[Capture],
    label: &str,
    clients: Vec<String>,
    expect_plaintext: bool,
) -> Result<ReadinessRound, LabError> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("peerauth-demo-readiness-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| LabError::io(format!("create {}", dir.display()), &e))?;
    let result = run_in(&dir, lab, captures, label, clients, expect_plaintext);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(
    dir: &Path,
    lab: &PodLab,
    captures: &[Capture],
    label: &str,
    clients: Vec<String>,
    expect_plaintext: bool,
) -> Result<ReadinessRound, LabError> {
    let objects = dir.join("cluster.json");
    write(&objects, &cluster_objects(lab).to_string())?;
    let mut args: Vec<String> = vec!["peerauth".into(), "readiness".into(), "--json".into()];
    let mut metrics = Vec::new();
    let mut logs = Vec::new();
    for c in captures {
        let pod = lab.pod(&c.pod_key)?;
        let id = format!("{}/{}", pod.namespace, pod.name);
        for (tag, text) in [("before", &c.before), ("after", &c.after)] {
            let f = dir.join(format!("{}.{tag}.prom", c.pod_key));
            write(&f, text)?;
            metrics.push(format!("{id}={}", f.display()));
        }
        let f = dir.join(format!("{}.log", c.pod_key));
        write(&f, &c.log)?;
        logs.push(format!("{id}={}", f.display()));
    }
    // Every "before" scrape first, then every "after": each series reads oldest first.
    metrics.sort_by_key(|m| !m.ends_with(".before.prom"));
    args.push("--metrics".into());
    args.extend(metrics);
    args.push("--logs".into());
    args.extend(logs);
    args.push("-f".into());
    args.push(objects.display().to_string());
    let cli = peerauth_cli::cli::Cli::try_parse_from(&args)
        .map_err(|e| LabError::Missing(format!("peerauth readiness arguments: {e}")))?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = peerauth_cli::run(&cli, &mut std::io::empty(), &mut out, &mut err)
        .map_err(|e| LabError::io("run peerauth readiness".to_string(), &e))?;
    let doc: ReadinessDocument = serde_json::from_slice(&out).map_err(|e| {
        LabError::Missing(format!(
            "a peerauth readiness document ({e}): {}",
            String::from_utf8_lossy(&err)
        ))
    })?;
    let mut servers = Vec::new();
    for c in captures {
        let pod = lab.pod(&c.pod_key)?;
        let row = doc
            .workloads
            .iter()
            .find(|w| w.namespace == pod.namespace && w.name == pod.name);
        let ports = row
            .map(|w| {
                w.ports
                    .iter()
                    .map(|p| {
                        let v = match p.verdict {
                            Verdict::Safe => "safe",
                            Verdict::NotSafe => "not safe",
                            Verdict::NoData => "no data",
                        };
                        (p.port, p.mtls, p.plaintext, format!("port {}: {v}", p.port))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sources = row
            .into_iter()
            .flat_map(|w| &w.ports)
            .flat_map(|p| &p.plaintext_sources)
            .map(|s| match &s.workload {
                Some(w) => format!(
                    "{}/{} ({}) ×{}",
                    w.namespace,
                    w.name,
                    if w.sidecar { "sidecar" } else { "no sidecar" },
                    s.requests
                ),
                None => format!("{} (unresolved) ×{}", s.address, s.requests),
            })
            .collect();
        servers.push(Readiness {
            workload: c.pod_key.clone(),
            ports,
            sources,
        });
    }
    let (plan, plan_validated) = doc
        .plan
        .as_ref()
        .map_or((String::new(), false), |p| (p.yaml.clone(), p.validated));
    Ok(ReadinessRound {
        label: label.to_string(),
        clients,
        servers,
        expect_plaintext,
        exit_code: code,
        plan,
        plan_validated,
        problems: doc
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.code, p.message))
            .collect(),
    })
}
