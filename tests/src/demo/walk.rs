//! The whole demo: every seed step and scenario in pods, each call compared three
//! ways, and the extra scenes where the seed shows them.
//!
//! Which scene belongs to which step is fixed here, after the seed: the debug-log line
//! with auto mTLS (step 1, seed 001's check), the mTLS capture while foo is STRICT
//! (step 3) and the plaintext one when httpbin.foo is DISABLE (step 6) — the pages'
//! data-in-motion moments —, the forged XFCC where an enforcing WasmPlugin guards
//! httpbin.bar (step 4), the STRICT readout after the seed steps (step 1's traffic with
//! the audit plugin), and `peerauth check` / `describe` with the scenarios.

use crate::demo::expected::{ExpectedCall, ExpectedStep, SeedLab};
use crate::demo::explain::{self, Explanation};
use crate::demo::forgery::{self, ForgeryReport};
use crate::demo::pods::{LabConfig, PodLab};
use crate::demo::predict::predict;
use crate::demo::readiness::{self, Capture, ReadinessRound};
use crate::demo::report::{CallReport, StepReport};
use crate::demo::steps::{self, Step, StepKind};
use crate::demo::upstream_log::{self, SocketMatch};
use crate::demo::wire::{self, WireCapture};
use crate::demo::LabError;
use std::time::Instant;

/// What the walk reports while it runs.
pub enum Event<'a> {
    /// A step begins: its number, the total, the step.
    Begin(usize, usize, &'a Step),
    /// A progress line.
    Progress(&'a str),
    /// A step's table is ready.
    Step(&'a StepReport),
    /// A scene's result, as lines to print.
    Scene(&'a str, &'a [String]),
}

/// The debug-log scene: the line Envoy wrote for one endpoint, and what it should name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SocketMatchCheck {
    pub client: String,
    pub server: String,
    pub address: String,
    pub expected_socket: String,
    pub found: Option<SocketMatch>,
}

impl SocketMatchCheck {
    pub fn ok(&self) -> bool {
        self.found
            .as_ref()
            .is_some_and(|m| m.socket == self.expected_socket)
    }
}

/// Everything the demo found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DemoReport {
    pub steps: Vec<StepReport>,
    pub data_in_motion: Vec<WireCapture>,
    pub socket_matches: Vec<SocketMatchCheck>,
    pub forged_xfcc: Option<ForgeryReport>,
    pub strict_readout: Vec<ReadinessRound>,
    pub explanations: Vec<(String, Explanation)>,
    pub seconds: f64,
}

impl DemoReport {
    pub fn calls(&self) -> usize {
        self.steps.iter().map(|s| s.calls.len()).sum()
    }

    pub fn agreeing(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.calls)
            .filter(|c| c.agrees())
            .count()
    }

    /// Whether each data-in-motion capture shows what the page says.
    pub fn wire_as_expected(&self, lab: &SeedLab) -> bool {
        self.data_in_motion.iter().all(|w| {
            let want = if w.mtls_seen {
                lab.data_in_motion.mtls
            } else {
                lab.data_in_motion.plaintext
            };
            w.request_line_readable == want.request_line_readable
                && w.marker_readable == want.marker_readable
        })
    }

    /// Every call agrees and every scene that ran shows what it should.
    pub fn all_agree(&self, lab: &SeedLab) -> bool {
        self.agreeing() == self.calls()
            && self.wire_as_expected(lab)
            && self.socket_matches.iter().all(SocketMatchCheck::ok)
            && self.forged_xfcc.as_ref().is_none_or(ForgeryReport::caught)
            && self.strict_readout.iter().all(ReadinessRound::as_expected)
    }
}

fn clients_of(expected: &ExpectedStep) -> Vec<String> {
    let mut c: Vec<String> = expected.calls.iter().map(|c| c.client.clone()).collect();
    c.sort();
    c.dedup();
    c
}

fn find_call<'e>(
    expected: &'e ExpectedStep,
    client: &str,
    service: &str,
) -> Result<&'e ExpectedCall, LabError> {
    expected
        .calls
        .iter()
        .find(|c| c.client == client && c.service == service)
        .ok_or_else(|| {
            LabError::Missing(format!(
                "{client} → {service} in the expected results of {}",
                expected.step
            ))
        })
}

/// Run one step on `lab`: configure every sidecar, run the step's calls, compare.
pub fn run_step(
    lab: &mut PodLab,
    step: &Step,
    expected: &ExpectedStep,
    plugins: &[crate::istiod::WasmPlugin],
    mesh: &policy::Mesh,
    emit: &mut dyn FnMut(Event),
) -> Result<StepReport, LabError> {
    let started = Instant::now();
    let clients = clients_of(expected);
    emit(Event::Progress(&format!(
        "configuring {} sidecar(s) as istiod would for this step ({} WasmPlugin(s)), starting their Envoys as uid 1337…",
        lab.topology().pods.iter().filter(|p| p.sidecar).count(),
        plugins.len()
    )));
    lab.configure(mesh, plugins, &clients)?;
    emit(Event::Progress(&format!(
        "running the step's {} curl calls inside the client pods…",
        expected.calls.len()
    )));
    let mut calls = Vec::new();
    for call in &expected.calls {
        let predicted = predict(mesh, &call.target())?;
        let (command, observed) = lab.call(&call.target(), &[])?;
        calls.push(CallReport {
            client: call.client.clone(),
            server: call.service.clone(),
            port: call.port,
            command,
            observed,
            expected_by_lab: call.result(),
            lab_shows: call.shown.clone(),
            predicted_by_policy: predicted.result,
            policy_explanation: predicted.explanation,
        });
    }
    lab.check_alive()?;
    let mut counters = Vec::new();
    for key in lab.sidecars().keys() {
        let c = lab.filter_counters(key)?;
        if !c.is_empty() {
            counters.push((key.clone(), c));
        }
    }
    Ok(StepReport {
        name: step.name.clone(),
        title: step.title.clone(),
        source: expected.source.clone(),
        reading: expected.reading.clone(),
        modes: lab.modes(mesh),
        plugins: plugins
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect(),
        calls,
        counters,
        envoys: lab.sidecars().len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn endpoint_address(lab: &PodLab, service: &str, port: u16) -> Option<String> {
    let (name, ns) = service.split_once('.')?;
    let t = lab.topology();
    let e = t.service(name, ns)?.endpoints(t, port).into_iter().next()?;
    Some(format!("{}:{}", e.pod.ip, e.port))
}

/// The debug-log scene on `lab` as configured for step 1.
pub fn socket_match_checks(lab: &PodLab, client: &str) -> Vec<SocketMatchCheck> {
    let matches = upstream_log::socket_matches(&lab.sidecar_log(client));
    [
        ("httpbin.foo", "tlsMode-istio"),
        ("httpbin.legacy", "tlsMode-disabled"),
    ]
    .iter()
    .map(|(server, socket)| {
        let address = endpoint_address(lab, server, 8000).unwrap_or_default();
        SocketMatchCheck {
            client: client.to_string(),
            server: server.to_string(),
            found: upstream_log::for_address(&matches, &address).cloned(),
            address,
            expected_socket: socket.to_string(),
        }
    })
    .collect()
}

/// The STRICT readout: step 1's traffic through the audit plugin, with and without
/// the client that has no sidecar.
pub fn strict_readout(
    lab: &mut PodLab,
    config: &LabConfig,
    mesh: &policy::Mesh,
    expected: &ExpectedStep,
    emit: &mut dyn FnMut(Event),
) -> Result<Vec<ReadinessRound>, LabError> {
    let audit = steps::wasm_plugin_file(&config.repo, "peerauth-audit.yaml")?;
    emit(Event::Progress(
        "starting every sidecar with the audit WasmPlugin (action audit, target STRICT) and step 1's policies…",
    ));
    lab.configure(mesh, &audit, &clients_of(expected))?;
    let servers = ["httpbin.foo", "httpbin.bar"];
    let mut rounds = Vec::new();
    let plan: [(&str, bool); 2] = [
        ("every client, sleep.legacy included", true),
        (
            "after sleep.legacy is migrated into the mesh (its calls stop)",
            false,
        ),
    ];
    for (label, with_legacy) in plan {
        let mut before = Vec::new();
        for server in servers {
            before.push((
                readiness::scrape(lab, server)?,
                lab.sidecar_log(server).len(),
            ));
        }
        let calls: Vec<&ExpectedCall> = expected
            .calls
            .iter()
            .filter(|c| with_legacy || c.client != "sleep.legacy")
            .collect();
        for call in &calls {
            lab.call_code_only(&call.target())?;
        }
        lab.check_alive()?;
        let mut captures = Vec::new();
        for (server, (scrape, log_len)) in servers.iter().zip(before) {
            let log = lab.sidecar_log(server);
            captures.push(Capture {
                pod_key: server.to_string(),
                before: scrape,
                after: readiness::scrape(lab, server)?,
                // Only this round's lines: the log holds every earlier round's too.
                log: log.get(log_len..).unwrap_or_default().to_string(),
            });
        }
        let mut clients: Vec<String> = calls.iter().map(|c| c.client.clone()).collect();
        clients.dedup();
        rounds.push(readiness::run_readiness(
            lab,
            &captures,
            label,
            clients,
            with_legacy,
        )?);
    }
    Ok(rounds)
}

fn scene_lines_wire(w: &WireCapture) -> Vec<String> {
    let yes = |b: bool| if b { "readable" } else { "not readable" };
    vec![
        format!(
            "tcpdump on {} ({}) during {}: {} ({} bytes captured)",
            w.pod, w.interface, w.call, w.observed, w.pcap_bytes
        ),
        format!(
            "  request line `{}`: {}",
            wire::REQUEST_LINE,
            yes(w.request_line_readable)
        ),
        format!(
            "  marker `{}: {}`: {}",
            wire::MARKER_HEADER,
            w.marker,
            yes(w.marker_readable)
        ),
    ]
}

/// Walk every step whose name contains `filter` (all when `None`).
pub fn walk(
    config: &LabConfig,
    filter: Option<&str>,
    emit: &mut dyn FnMut(Event),
) -> Result<DemoReport, LabError> {
    let started = Instant::now();
    let repo = &config.repo;
    let seed_lab = SeedLab::load(repo)?;
    let workloads = steps::workload_sources(repo)?;
    let all = steps::load_all(repo)?;
    let chosen: Vec<&Step> = all
        .iter()
        .filter(|s| filter.is_none_or(|f| s.name.contains(f)))
        .collect();
    if chosen.is_empty() {
        return Err(LabError::NoStep(filter.unwrap_or_default().to_string()));
    }
    let mut report = DemoReport::default();
    let mut seed_pods: Option<PodLab> = None;
    let total = chosen.len();
    for (i, step) in chosen.iter().enumerate() {
        let expected = seed_lab
            .step(&step.name)
            .ok_or_else(|| LabError::NoExpected(step.name.clone()))?;
        // The seed pods are done once the scenarios begin (steps come first); their
        // readout belongs to them, so it is printed before the first scenario's header.
        if step.kind == StepKind::Scenario {
            if let Some(mut lab) = seed_pods.take() {
                finish_seed(
                    &mut lab,
                    config,
                    &workloads,
                    &all,
                    &seed_lab,
                    &mut report,
                    emit,
                )?;
            }
        }
        emit(Event::Begin(i + 1, total, step));
        let sources = steps::sources_for(&workloads, step);
        let mesh = steps::mesh_of(&sources)?;
        let documents = steps::documents(&sources)?;
        let plugins = steps::plugins_for_step(repo, step)?;
        let mut scenario_pods = None;
        let lab = match step.kind {
            StepKind::Seed => {
                if seed_pods.is_none() {
                    emit(Event::Progress(
                        "creating the pods: one network namespace each, routes through a node namespace, ClusterIP DNAT, hosts files; istio-iptables capture in the sidecar pods; certificates from the mesh CA; lab-app on every container port…",
                    ));
                    seed_pods = Some(PodLab::create(config.clone(), &mesh, &documents)?);
                }
                seed_pods
                    .as_mut()
                    .ok_or_else(|| LabError::Missing("the seed lab's pods".into()))?
            }
            StepKind::Scenario => {
                emit(Event::Progress("creating this scenario's pods…"));
                scenario_pods.insert(PodLab::create(config.clone(), &mesh, &documents)?)
            }
        };
        let step_report = run_step(lab, step, expected, &plugins, &mesh, emit)?;
        emit(Event::Step(&step_report));
        report.steps.push(step_report);
        match step.name.as_str() {
            "1-no-policy" => {
                let checks = socket_match_checks(lab, "sleep.foo");
                let lines: Vec<String> = checks
                    .iter()
                    .map(|c| match &c.found {
                        Some(m) => format!(
                            "sleep.foo's sidecar, for {} ({}): {} {}",
                            c.server,
                            c.address,
                            m.line.rsplit("] ").next().unwrap_or(&m.line),
                            if c.ok() {
                                "✓"
                            } else {
                                "✗ expected another socket"
                            }
                        ),
                        None => format!(
                            "sleep.foo's sidecar, for {} ({}): no `transport socket match` line ✗",
                            c.server, c.address
                        ),
                    })
                    .collect();
                emit(Event::Scene("debug log (upstream:debug)", &lines));
                report.socket_matches.extend(checks);
            }
            "3-namespace-strict" | "6-precedence" => {
                let client = if step.name.starts_with('3') {
                    "sleep.foo"
                } else {
                    "sleep.legacy"
                };
                let call = find_call(expected, client, "httpbin.foo")?;
                let w = wire::capture(lab, &step.name, &call.target())?;
                emit(Event::Scene("data in motion", &scene_lines_wire(&w)));
                report.data_in_motion.push(w);
            }
            "4-workload-strict" => {
                let f = forgery::forge(lab, "sleep.foo", "httpbin.bar", "httpbin.bar", 8000, 80)?;
                let mut lines = vec![
                    format!(
                        "sleep.foo's app sends `x-forwarded-client-cert: {}` through its own sidecar: {} — the app received {}",
                        f.forged_header,
                        f.via_sidecar_status,
                        match (&f.via_sidecar_xfcc, f.via_sidecar_forwarded) {
                            (_, true) => "the forged element (NOT stripped)".to_string(),
                            (Some(x), false) => format!("only the sidecar's own element ({x})"),
                            (None, false) => "no XFCC".to_string(),
                        }
                    ),
                    "  (the client sidecar's outbound connection manager sanitizes XFCC: istiod sets no forward_client_cert_details there)".into(),
                    format!(
                        "so it bypasses its sidecar: uid 1337 in sleep.foo's pod, own mTLS with sleep.foo's certificate and ALPN istio-http/1.1, to httpbin.bar's pod IP:80"
                    ),
                    format!("  $ {}", f.bypass_command),
                    format!("  without the forged header: {}", f.honest_status),
                    format!(
                        "  with it: {}{}",
                        f.forged_status,
                        if f.forged_status == 403 { " — rejected by the filter" } else { " — NOT rejected" }
                    ),
                ];
                lines.extend(f.counters.iter().map(|c| format!("  filter counter: {c}")));
                emit(Event::Scene("forged XFCC", &lines));
                report.forged_xfcc = Some(f);
            }
            "hipster-shop-exception" => {
                let dir = explain::path_for_cli(repo, &step.dir);
                let e = explain::peerauth(&["check", &dir]);
                let lines: Vec<String> = std::iter::once(format!("$ {}", e.command))
                    .chain(e.output.lines().map(|l| format!("  {l}")))
                    .collect();
                emit(Event::Scene("peerauth check", &lines));
                report.explanations.push((step.name.clone(), e));
            }
            "catalog-strict" => {
                let dir = explain::path_for_cli(repo, &step.dir);
                let e = explain::peerauth(&["describe", "workshop/catalogdetail", "-f", &dir]);
                let lines: Vec<String> = std::iter::once(format!("$ {}", e.command))
                    .chain(e.output.lines().map(|l| format!("  {l}")))
                    .collect();
                emit(Event::Scene("peerauth describe", &lines));
                report.explanations.push((step.name.clone(), e));
            }
            _ => {}
        }
        drop(scenario_pods);
    }
    if let Some(mut lab) = seed_pods.take() {
        finish_seed(
            &mut lab,
            config,
            &workloads,
            &all,
            &seed_lab,
            &mut report,
            emit,
        )?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The scenes that need the seed pods after the steps: the STRICT readout.
fn finish_seed(
    lab: &mut PodLab,
    config: &LabConfig,
    workloads: &[(String, String)],
    all: &[Step],
    seed_lab: &SeedLab,
    report: &mut DemoReport,
    emit: &mut dyn FnMut(Event),
) -> Result<(), LabError> {
    let first = all
        .iter()
        .find(|s| s.kind == StepKind::Seed)
        .ok_or_else(|| LabError::Missing("manifests/steps/1-…".into()))?;
    let expected = seed_lab
        .step(&first.name)
        .ok_or_else(|| LabError::NoExpected(first.name.clone()))?;
    let mesh = steps::mesh_for(workloads, first)?;
    let rounds = strict_readout(lab, config, &mesh, expected, emit)?;
    let mut lines = Vec::new();
    for r in &rounds {
        lines.push(format!("round: {}", r.label));
        for s in &r.servers {
            lines.push(format!(
                "  {} (counters on port {}) received {} mTLS request(s); {}",
                s.workload,
                s.ports().join(","),
                s.mtls(),
                s.verdict()
            ));
        }
        for p in &r.problems {
            lines.push(format!("  problem: {p}"));
        }
        if r.plan.is_empty() {
            lines.push(
                "  peerauth readiness proposes no change: nothing can switch to STRICT yet".into(),
            );
        } else {
            lines.push(format!(
                "  peerauth readiness proposes ({}):",
                if r.plan_validated {
                    "checked by policy"
                } else {
                    "NOT validated by policy"
                }
            ));
            lines.extend(r.plan.lines().map(|l| format!("    {l}")));
        }
    }
    emit(Event::Scene("safe to go STRICT?", &lines));
    report.strict_readout = rounds;
    lab.stop_sidecars();
    Ok(())
}
