//! `peerauth readiness`: "is it safe to switch this to STRICT — who still sends
//! plaintext?" answered from what the peerauth filter recorded in the running
//! proxies (its counters and log lines), the cluster's objects mapping pod IPs to
//! workloads, and `policy` for the current modes and for checking the proposed
//! migration plan.
//!
//! Nothing is guessed: a counter that goes backwards, a scrape without the
//! filter's counters, a pod IP two pods claim, a series whose pod cannot be told
//! are reported as problems, and the affected ports are `no data` unless
//! plaintext was seen anyway.

pub mod scrape;

use crate::cli::{MeshArgs, OutputArgs};
use crate::{convert, input, json, EXIT_FINDINGS, EXIT_INPUT, EXIT_OK};
use clap::Args;
use policy::mesh::{Mesh, Workload};
use policy::MtlsMode;
use scrape::{LogLine, Sample};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReadinessArgs {
    /// The filter's counters: Envoy's `/stats/prometheus` text (one file per pod, or
    /// several pods' concatenated with `pod` and `namespace` labels) or the JSON of a
    /// Prometheus `/api/v1/query`. Prefix `NAMESPACE/POD=` when the series carry no pod
    /// label. `-` reads stdin. A series read twice (two scrapes) counts what happened between.
    #[arg(long = "metrics", value_name = "[NS/POD=]FILE", required = true, num_args = 1..)]
    pub metrics: Vec<String>,
    /// The filter's log lines (`kubectl logs POD -c istio-proxy`, or with `--prefix`
    /// for several pods): the source addresses of the plaintext requests. Prefix
    /// `NAMESPACE/POD=` for one pod's log without kubectl's `--prefix`.
    #[arg(long = "logs", value_name = "[NS/POD=]FILE", num_args = 1..)]
    pub logs: Vec<String>,
    /// The cluster's objects (`kubectl get pods,services,namespaces,peerauthentications,destinationrules -A -o yaml`):
    /// pod IPs to workloads, the current modes, and the migration plan.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `peerauth readiness --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadinessDocument {
    pub version: String,
    /// Always `"readiness"`.
    pub command: String,
    pub exit_code: u8,
    /// Metrics and log inputs, then the object files, as named.
    pub inputs: Vec<String>,
    /// What could not be read or told apart; `input_error` ones make the exit code 2.
    pub problems: Vec<Problem>,
    /// One per pod (a Pod object is a workload to `policy`), sorted by namespace and name.
    pub workloads: Vec<WorkloadReadiness>,
    /// `None` without cluster objects (`-f`): no modes to start from.
    pub plan: Option<Plan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable kebab-case: `input-unreadable`, `input-metrics`, `input-objects`,
    /// `pod-unknown`, `no-peerauth-metrics`, `labels-not-extracted`,
    /// `counter-went-backwards`, `pod-ip-conflict`, `not-in-objects`.
    pub code: String,
    pub input_error: bool,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadReadiness {
    pub namespace: String,
    pub name: String,
    /// From the cluster's objects; `None` when they were not given or lack the pod.
    pub sidecar: Option<bool>,
    pub ports: Vec<PortReadiness>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortReadiness {
    /// The container port (the filter's `port` label, what PeerAuthentication ports mean).
    pub port: u32,
    /// The port's mode now, as `policy` resolves it from the objects.
    pub current_mode: Option<MtlsMode>,
    pub mtls: u64,
    pub plaintext: u64,
    /// Requests the filter (in audit) counted as ones its target mode would refuse.
    pub would_reject: u64,
    /// Requests the filter refused.
    pub rejected: u64,
    /// Forged XFCC counts by `form` (plaintext, smuggled, mismatch, malformed, cert_invalid).
    pub forged_xfcc: BTreeMap<String, u64>,
    /// Sources of plaintext or refused requests from the log lines, most requests first.
    pub plaintext_sources: Vec<Source>,
    pub verdict: Verdict,
    /// One sentence: why this verdict (who would break).
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The IP the log line gives.
    pub address: String,
    pub requests: u64,
    /// `None`: no pod in the objects has this IP (or two do; see problems).
    pub workload: Option<SourceWorkload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceWorkload {
    pub namespace: String,
    pub name: String,
    pub sidecar: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Requests seen, none plaintext, none the filter would refuse.
    Safe,
    /// Plaintext (or requests the filter would refuse) seen: STRICT breaks those callers.
    NotSafe,
    /// No request seen, or the counts cannot be trusted (see problems).
    NoData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// PeerAuthentication documents to apply (empty when nothing can switch).
    pub yaml: String,
    pub policies: Vec<PlannedPolicy>,
    /// `policy` read the objects plus the plan: every planned port resolves to
    /// STRICT, every other port keeps its mode, and the plan adds no error.
    pub validated: bool,
    pub validation_problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPolicy {
    pub namespace: String,
    pub name: String,
    /// `namespace`, `workload` or `port`.
    pub level: String,
    /// Whether it replaces a PeerAuthentication that exists (same name).
    pub replaces_existing: bool,
    /// `namespace/pod:port` switched to STRICT by it.
    pub ports: Vec<String>,
    pub why: String,
}

fn problem(code: &str, input_error: bool, message: String) -> Problem {
    Problem {
        code: code.into(),
        input_error,
        message,
    }
}

/// `NS/POD=FILE` → (Some((ns, pod)), FILE); a plain path → (None, path).
fn split_pod(arg: &str) -> (Option<(String, String)>, &str) {
    if let Some((pod, file)) = arg.split_once('=') {
        if let Some((ns, name)) = pod.split_once('/') {
            if !ns.is_empty() && !name.is_empty() && !name.contains('/') {
                return (Some((ns.to_string(), name.to_string())), file);
            }
        }
    }
    (None, arg)
}

fn read(file: &str, stdin: &mut dyn Read, stdin_used: &mut bool) -> Result<String, String> {
    if file == "-" {
        if *stdin_used {
            return Err("stdin (-) can be read only once".into());
        }
        *stdin_used = true;
        let mut s = String::new();
        stdin
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(s);
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))
}

type PodKey = (String, String);
/// The objects' workloads by (namespace, name).
type WorkloadIndex<'m> = BTreeMap<(&'m str, &'m str), &'m Workload>;
/// A counter's name and its filter labels.
type SeriesKey = (String, BTreeMap<String, String>);

/// Pods from the objects: IP → pods claiming it.
#[derive(Default)]
struct Pods {
    by_ip: BTreeMap<String, BTreeSet<PodKey>>,
    names: BTreeSet<PodKey>,
}

fn pods_of(values: &[serde_json::Value], pods: &mut Pods) {
    for v in values {
        if v["kind"] != "Pod" {
            continue;
        }
        let (Some(name), ns) = (
            v["metadata"]["name"].as_str(),
            v["metadata"]["namespace"].as_str().unwrap_or("default"),
        ) else {
            continue;
        };
        let key = (ns.to_string(), name.to_string());
        pods.names.insert(key.clone());
        let mut ips: BTreeSet<String> = BTreeSet::new();
        if let Some(ip) = v["status"]["podIP"].as_str() {
            ips.insert(ip.to_string());
        }
        for ip in v["status"]["podIPs"].as_array().into_iter().flatten() {
            if let Some(ip) = ip["ip"].as_str() {
                ips.insert(ip.to_string());
            }
        }
        for ip in ips {
            pods.by_ip.entry(ip).or_default().insert(key.clone());
        }
    }
}

/// Counts of one series over the window: `None` when it went backwards.
fn window(values: &[f64]) -> Option<u64> {
    if values.windows(2).any(|w| w[1] < w[0]) {
        return None;
    }
    let first = values.first().copied().unwrap_or(0.0);
    let last = values.last().copied().unwrap_or(0.0);
    let n = if values.len() > 1 { last - first } else { last };
    // Counters are integers; Prometheus writes them as floats.
    Some(n.max(0.0).round() as u64)
}

#[derive(Default)]
struct PortData {
    mtls: u64,
    plaintext: u64,
    would_reject: u64,
    rejected: u64,
    forged: BTreeMap<String, u64>,
    went_backwards: bool,
    sources: BTreeMap<String, u64>,
}

pub fn run(
    args: &ReadinessArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut inputs: Vec<String> = Vec::new();
    let mut stdin_used = false;

    // Objects first: they tell which pod a log prefix names.
    let mut mesh: Option<Mesh> = None;
    let mut pods = Pods::default();
    if !args.files.is_empty() {
        let read = if args.files.iter().any(|p| p.as_os_str() == "-") {
            stdin_used = true;
            input::collect(&args.files, stdin)
        } else {
            input::collect(&args.files, &mut io::empty())
        };
        for d in &read.problems {
            problems.push(problem("input-unreadable", true, d.message.clone()));
        }
        for (name, text) in &read.sources {
            inputs.push(name.clone());
            match policy::documents::values(text) {
                Ok(values) => pods_of(&values, &mut pods),
                Err(e) => problems.push(problem("input-objects", true, format!("{name}: {e}"))),
            }
        }
        let pairs: Vec<(&str, &str)> = read
            .sources
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let report = policy::check(&pairs, args.mesh.config());
        for d in report
            .diagnostics
            .iter()
            .filter(|d| crate::is_input_error(d))
        {
            problems.push(problem("input-objects", true, d.message.clone()));
        }
        mesh = Some(report.mesh);
    }
    for (ip, claim) in &pods.by_ip {
        if claim.len() > 1 {
            let names: Vec<String> = claim.iter().map(|(n, p)| format!("{n}/{p}")).collect();
            problems.push(problem(
                "pod-ip-conflict",
                false,
                format!(
                    "{ip} is the IP of {} pods ({}): requests from it are listed as unresolved (hostNetwork pods share their node's IP; otherwise the objects mix two snapshots)",
                    claim.len(),
                    names.join(", ")
                ),
            ));
        }
    }

    // Series per pod, in input order, so two scrapes of a pod give a window.
    let mut series: BTreeMap<PodKey, BTreeMap<SeriesKey, Vec<f64>>> = BTreeMap::new();
    // A pod's scrape without the filter's counters before they appear is a zero
    // baseline (the filter creates a counter on its first request): reported only
    // when the pod never shows a counter.
    let mut empty_scrapes: BTreeMap<PodKey, Vec<String>> = BTreeMap::new();
    for arg in &args.metrics {
        let (file_pod, file) = split_pod(arg);
        inputs.push(file.to_string());
        let text = match read(file, stdin, &mut stdin_used) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem("input-unreadable", true, e));
                continue;
            }
        };
        let scrape = match scrape::parse_metrics(&text) {
            Ok(s) => s,
            Err(e) => {
                problems.push(problem("input-metrics", true, format!("{file}: {e}")));
                continue;
            }
        };
        if scrape.samples.is_empty() {
            let (code, message) = if scrape.encoded_names > 0 {
                ("labels-not-extracted", format!("{file}: the filter's counters carry their labels in the metric name: the proxy lacks the tag-extraction rules (Istio: extraStatTags port,mode,security,outcome,reason,form,handling; see filter/README.md \"Metrics\")"))
            } else {
                ("no-peerauth-metrics", format!("{file}: no peerauth metrics in {} series: the filter is not loaded in this proxy, has seen no request, or proxyStatsMatcher drops wasmcustom stats", scrape.other_series))
            };
            match file_pod {
                Some(p) if code == "no-peerauth-metrics" => {
                    series.entry(p.clone()).or_default();
                    empty_scrapes.entry(p).or_default().push(message);
                }
                _ => problems.push(problem(code, false, message)),
            }
            continue;
        }
        let mut unknown = 0;
        for Sample {
            pod,
            metric,
            labels,
            value,
            ..
        } in scrape.samples
        {
            let key = match (pod, &file_pod) {
                (Some((Some(ns), p)), _) => (ns, p),
                (Some((None, p)), Some((ns, _))) => (ns.clone(), p),
                (None, Some(fp)) => fp.clone(),
                _ => {
                    unknown += 1;
                    continue;
                }
            };
            let baseline = empty_scrapes.contains_key(&key);
            let values = series
                .entry(key)
                .or_default()
                .entry((metric, labels))
                .or_default();
            if values.is_empty() && baseline {
                values.push(0.0);
            }
            values.push(value);
        }
        if unknown > 0 {
            problems.push(problem(
                "pod-unknown",
                true,
                format!("{file}: {unknown} series name no pod and namespace: give the file as NAMESPACE/POD={file}"),
            ));
        }
    }

    for (pod, messages) in empty_scrapes {
        if series.get(&pod).is_none_or(BTreeMap::is_empty) {
            problems.extend(
                messages
                    .into_iter()
                    .map(|m| problem("no-peerauth-metrics", false, m)),
            );
        }
    }

    let mut logs: Vec<(PodKey, LogLine)> = Vec::new();
    for arg in &args.logs {
        let (file_pod, file) = split_pod(arg);
        inputs.push(file.to_string());
        let text = match read(file, stdin, &mut stdin_used) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem("input-unreadable", true, e));
                continue;
            }
        };
        let mut unknown = 0;
        for line in scrape::parse_logs(&text) {
            let key = match (&line.pod, &file_pod) {
                (Some(p), Some((ns, _))) => Some((ns.clone(), p.clone())),
                (Some(p), None) => {
                    // The pods with metrics first (the logs are theirs), then the objects.
                    let unique = |keys: &mut dyn Iterator<Item = &PodKey>| {
                        let found: BTreeSet<&PodKey> = keys.filter(|(_, n)| n == p).collect();
                        (found.len() == 1)
                            .then(|| found.into_iter().next().cloned())
                            .flatten()
                    };
                    unique(&mut series.keys()).or_else(|| unique(&mut pods.names.iter()))
                }
                (None, Some(fp)) => Some(fp.clone()),
                (None, None) => None,
            };
            match key {
                Some(k) => logs.push((k, line)),
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            problems.push(problem(
                "pod-unknown",
                true,
                format!("{file}: {unknown} filter log lines whose pod cannot be told: give the file as NAMESPACE/POD={file} (or kubectl logs --prefix with the objects)"),
            ));
        }
    }

    // Per pod and port.
    let mut data: BTreeMap<PodKey, BTreeMap<u32, PortData>> = BTreeMap::new();
    for (pod, all) in &series {
        let ports = data.entry(pod.clone()).or_default();
        for ((metric, labels), values) in all {
            let Some(port) = labels.get("port").and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let d = ports.entry(port).or_default();
            let Some(n) = window(values) else {
                d.went_backwards = true;
                problems.push(problem(
                    "counter-went-backwards",
                    false,
                    format!(
                        "{}/{} {metric}{{{}}} went backwards ({}): the proxy restarted between the scrapes; its counts are left out",
                        pod.0,
                        pod.1,
                        labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(","),
                        values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" → ")
                    ),
                ));
                continue;
            };
            let label = |k: &str| labels.get(k).map(String::as_str);
            if metric == scrape::FORGED {
                *d.forged
                    .entry(label("form").unwrap_or("unknown").to_string())
                    .or_default() += n;
                continue;
            }
            match label("security") {
                Some("mutual_tls") => d.mtls += n,
                Some("plaintext") => d.plaintext += n,
                _ => {}
            }
            match label("outcome") {
                Some("would_reject") => d.would_reject += n,
                Some("rejected") => d.rejected += n,
                _ => {}
            }
        }
    }
    for (pod, line) in &logs {
        let Some(port) = line.field("port").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let plaintext = line.field("security") == Some("plaintext");
        let refused = matches!(line.field("outcome"), Some("would_reject" | "rejected"));
        if !(plaintext || refused) {
            continue;
        }
        if let Some(ip) = line.source_ip() {
            *data
                .entry(pod.clone())
                .or_default()
                .entry(port)
                .or_default()
                .sources
                .entry(ip)
                .or_default() += 1;
        }
    }

    let reach = mesh.as_ref().map(Mesh::reach);
    let index: WorkloadIndex = mesh
        .iter()
        .flat_map(|m| &m.workloads)
        .map(|w| ((w.namespace.as_str(), w.name.as_str()), w))
        .collect();
    let find = |key: &PodKey| index.get(&(key.0.as_str(), key.1.as_str())).copied();
    // Served ports of every pod in the objects that has data, so a port nobody called is `no data`.
    let mut workloads = Vec::new();
    let mut modes: BTreeMap<(PodKey, u32), MtlsMode> = BTreeMap::new();
    for (pod, ports) in &mut data {
        let w = find(pod);
        if mesh.is_some() && w.is_none() {
            problems.push(problem(
                "not-in-objects",
                false,
                format!("{}/{} has metrics but is not among the objects: its sources and mode are unknown and the plan leaves it out", pod.0, pod.1),
            ));
        }
        if let (Some(w), Some(reach)) = (w, &reach) {
            let desc = convert::workload(w, &reach.describe(w));
            for p in &desc.ports {
                if w.sidecar {
                    ports.entry(p.port).or_default();
                }
                modes.insert((pod.clone(), p.port), p.resolution.mode);
            }
            for port in ports.keys() {
                modes
                    .entry((pod.clone(), *port))
                    .or_insert(desc.workload.mode);
            }
        }
        let mut rows = Vec::new();
        for (port, d) in ports.iter() {
            let sources = resolve_sources(&d.sources, &pods, &index);
            let (verdict, why) = verdict(d, &sources);
            rows.push(PortReadiness {
                port: *port,
                current_mode: modes.get(&(pod.clone(), *port)).copied(),
                mtls: d.mtls,
                plaintext: d.plaintext,
                would_reject: d.would_reject,
                rejected: d.rejected,
                forged_xfcc: d.forged.clone(),
                plaintext_sources: sources,
                verdict,
                why,
            });
        }
        workloads.push(WorkloadReadiness {
            namespace: pod.0.clone(),
            name: pod.1.clone(),
            sidecar: w.map(|w| w.sidecar),
            ports: rows,
        });
    }

    let plan = mesh
        .as_ref()
        .map(|m| plan::propose(m, args.mesh.config(), &workloads));

    let input_errors = problems.iter().any(|p| p.input_error);
    let all_safe = !workloads.is_empty()
        && workloads
            .iter()
            .flat_map(|w| &w.ports)
            .all(|p| p.verdict == Verdict::Safe)
        && workloads.iter().all(|w| !w.ports.is_empty());
    let code = if input_errors {
        EXIT_INPUT
    } else if all_safe {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    };
    let doc = ReadinessDocument {
        version: json::VERSION.into(),
        command: "readiness".into(),
        exit_code: code,
        inputs,
        problems,
        workloads,
        plan,
    };
    if args.output.json {
        crate::write_json(out, &doc)?;
    } else {
        human(out, err, &doc)?;
    }
    Ok(code)
}

fn resolve_sources(
    sources: &BTreeMap<String, u64>,
    pods: &Pods,
    index: &WorkloadIndex,
) -> Vec<Source> {
    let mut out: Vec<Source> = sources
        .iter()
        .map(|(ip, n)| {
            let workload = pods
                .by_ip
                .get(ip)
                .filter(|claim| claim.len() == 1)
                .and_then(|claim| claim.iter().next())
                .map(|(ns, name)| SourceWorkload {
                    namespace: ns.clone(),
                    name: name.clone(),
                    sidecar: index
                        .get(&(ns.as_str(), name.as_str()))
                        .is_some_and(|w| w.sidecar),
                });
            Source {
                address: ip.clone(),
                requests: *n,
                workload,
            }
        })
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.address.cmp(&b.address)));
    out
}

fn source_text(s: &Source) -> String {
    match &s.workload {
        Some(w) => format!(
            "{}/{} ({}, {}) ×{}",
            w.namespace,
            w.name,
            if w.sidecar { "sidecar" } else { "no sidecar" },
            s.address,
            s.requests
        ),
        None => format!("{} (unresolved) ×{}", s.address, s.requests),
    }
}

fn verdict(d: &PortData, sources: &[Source]) -> (Verdict, String) {
    if d.plaintext > 0 || d.would_reject > 0 {
        let who = if sources.is_empty() {
            "sources unknown (no log lines given for this pod)".to_string()
        } else {
            sources
                .iter()
                .map(source_text)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return (
            Verdict::NotSafe,
            format!(
                "{} plaintext and {} would-be-refused requests; STRICT breaks: {who}",
                d.plaintext, d.would_reject
            ),
        );
    }
    if d.went_backwards {
        return (
            Verdict::NoData,
            "a counter went backwards (proxy restarted): scrape twice again without a restart"
                .into(),
        );
    }
    if d.mtls + d.rejected == 0 {
        return (Verdict::NoData, "no request seen in the window".into());
    }
    (
        Verdict::Safe,
        format!("{} requests, all mTLS, none STRICT would refuse", d.mtls),
    )
}

fn human(out: &mut dyn Write, err: &mut dyn Write, doc: &ReadinessDocument) -> io::Result<()> {
    for w in &doc.workloads {
        let sidecar = match w.sidecar {
            Some(true) => " (sidecar)",
            Some(false) => " (no sidecar)",
            None => "",
        };
        writeln!(out, "{}/{}{sidecar}", w.namespace, w.name)?;
        if w.ports.is_empty() {
            writeln!(out, "   no peerauth counters: no data")?;
        }
        for p in &w.ports {
            let mode = p
                .current_mode
                .map(|m| format!(" [{}]", m.as_str()))
                .unwrap_or_default();
            let forged: u64 = p.forged_xfcc.values().sum();
            let verdict = match p.verdict {
                Verdict::Safe => "safe",
                Verdict::NotSafe => "not safe",
                Verdict::NoData => "no data",
            };
            writeln!(
                out,
                "   port {}{mode}: {} mTLS, {} plaintext, {} forged XFCC: {verdict}",
                p.port, p.mtls, p.plaintext, forged
            )?;
            if forged > 0 {
                let forms: Vec<String> = p
                    .forged_xfcc
                    .iter()
                    .map(|(f, n)| format!("{f} ×{n}"))
                    .collect();
                writeln!(out, "      forged XFCC: {}", forms.join(", "))?;
            }
            if p.verdict != Verdict::Safe {
                writeln!(out, "      {}", p.why)?;
            }
        }
    }
    if !doc.problems.is_empty() {
        writeln!(out)?;
        writeln!(out, "problems:")?;
        for p in &doc.problems {
            writeln!(out, "   {}: {}", p.code, p.message)?;
        }
    }
    match &doc.plan {
        None => writeln!(
            out,
            "\nno migration plan: give the cluster's objects with -f to start from their modes"
        )?,
        Some(plan) if plan.policies.is_empty() => {
            writeln!(out, "\nmigration plan: nothing can switch to STRICT yet")?
        }
        Some(plan) => {
            writeln!(
                out,
                "\nmigration plan ({}):",
                if plan.validated {
                    "checked by policy: the planned ports resolve to STRICT, the others keep their modes"
                } else {
                    "NOT validated, see below"
                }
            )?;
            write!(out, "{}", plan.yaml)?;
            for v in &plan.validation_problems {
                writeln!(err, "plan: {v}")?;
            }
        }
    }
    for p in doc.problems.iter().filter(|p| p.input_error) {
        writeln!(err, "peerauth: error[{}]: {}", p.code, p.message)?;
    }
    Ok(())
}

mod plan;
