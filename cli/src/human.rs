//! Human output. No colours: the output is meant to be read in CI logs and
//! pasted into reviews as is.

use crate::json::{self, Level, PolicyRef, Resolution, Summary, WorkloadDescription};
use policy::diagnostic::{Diagnostic, Severity};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// `path:line: error[code]: message`, then the hint, like a compiler.
fn diagnostic(out: &mut dyn Write, d: &Diagnostic) -> io::Result<()> {
    let place = match (&d.location, &d.resource) {
        (Some(l), _) if l.line > 0 => format!("{}:{}", l.source, l.line),
        (Some(l), _) => l.source.clone(),
        (None, Some(r)) => format!("{} {}/{}", r.kind, r.namespace, r.name),
        (None, None) => "peerauth".to_string(),
    };
    let severity = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    writeln!(out, "{place}: {severity}[{}]: {}", d.code, d.message)?;
    if let Some(hint) = &d.hint {
        writeln!(out, "  = hint: {hint}")?;
    }
    if let Some(code) = &d.istio_code {
        let who = if code.starts_with("KIA") {
            "Kiali"
        } else {
            "istioctl analyze"
        };
        writeln!(out, "  = see: {who} {code}")?;
    }
    Ok(())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn check(
    out: &mut dyn Write,
    diagnostics: &[Diagnostic],
    inputs: &json::Inputs,
    summary: &Summary,
    strict: bool,
) -> io::Result<()> {
    for d in diagnostics {
        diagnostic(out, d)?;
        writeln!(out)?;
    }
    let mut read = format!(
        "checked {}: {}",
        plural(inputs.files.len(), "file", "files"),
        plural(inputs.resources, "resource", "resources")
    );
    if !inputs.skipped_documents.is_empty() {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &inputs.skipped_documents {
            *kinds.entry(s.kind.as_str()).or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        read.push_str(&format!(
            ", {} skipped ({})",
            plural(
                inputs.skipped_documents.len(),
                "document of another kind",
                "documents of other kinds"
            ),
            kinds.join(", ")
        ));
    }
    if !inputs.skipped_files.is_empty() {
        read.push_str(&format!(
            ", {} skipped",
            plural(
                inputs.skipped_files.len(),
                "non-YAML file",
                "non-YAML files"
            )
        ));
    }
    writeln!(out, "{read}")?;
    let verdict = if summary.input_errors > 0 {
        "bad input"
    } else if summary.errors > 0 || (strict && summary.warnings > 0) {
        "failed"
    } else {
        "ok"
    };
    writeln!(
        out,
        "{}, {}{}: {verdict}",
        plural(summary.errors, "error", "errors"),
        plural(summary.warnings, "warning", "warnings"),
        if summary.input_errors > 0 {
            format!(" ({} in the input)", summary.input_errors)
        } else {
            String::new()
        }
    )
}

/// For `describe`/`matrix`: the problems that make the answer incomplete (exit 2),
/// and a pointer to `check` for the rest.
pub fn input_errors(err: &mut dyn Write, diagnostics: &[Diagnostic]) -> io::Result<()> {
    for d in diagnostics.iter().filter(|d| crate::is_input_error(d)) {
        diagnostic(err, d)?;
    }
    let others = diagnostics
        .iter()
        .filter(|d| !crate::is_input_error(d) && d.severity != Severity::Info)
        .count();
    if others > 0 {
        writeln!(
            err,
            "note: {} in these files; run `peerauth check` to see {}",
            plural(others, "other finding", "other findings"),
            if others == 1 { "it" } else { "them" }
        )?;
    }
    Ok(())
}

fn dotted(p: &PolicyRef) -> String {
    format!("{}.{}", p.name, p.namespace)
}

fn decided(r: &Resolution) -> String {
    let by = r
        .decided_by
        .as_ref()
        .map(dotted)
        .unwrap_or_else(|| "?".into());
    match r.decided_at {
        Level::Default => "Istio default: no policy applies".into(),
        Level::Mesh => format!("mesh-wide policy {by}"),
        Level::Namespace => format!("namespace-wide policy {by}"),
        Level::Workload => format!("workload policy {by}"),
        Level::Port => format!("portLevelMtls of {by}"),
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Default => "default",
        Level::Mesh => "mesh",
        Level::Namespace => "namespace",
        Level::Workload => "workload",
        Level::Port => "port",
    }
}

/// The ambient lines of `describe`: what ztunnel enforces, per port.
fn ambient(out: &mut dyn Write, a: &policy::resolve::AmbientReport) -> io::Result<()> {
    let what = |m: policy::MtlsMode| {
        if m == policy::MtlsMode::Strict {
            "STRICT: ztunnel rejects connections without a peer identity"
        } else {
            "PERMISSIVE: ztunnel accepts plaintext; mesh peers still use HBONE mTLS"
        }
    };
    writeln!(
        out,
        "Data plane: ambient (captured by ztunnel, no sidecar; mesh traffic is HBONE mTLS)"
    )?;
    if let Some(w) = &a.use_waypoint {
        writeln!(out, "Waypoint: {w} (istio.io/use-waypoint)")?;
    }
    writeln!(out, "Effective PeerAuthentication (ztunnel):")?;
    writeln!(out, "   Workload mTLS mode: {}", what(a.workload))?;
    if !a.ports.is_empty() {
        writeln!(out, "   Port Level mTLS mode:")?;
        for (port, m) in &a.ports {
            writeln!(out, "      {port}: {}", what(*m))?;
        }
    }
    writeln!(out, "ztunnel policies from istiod:")?;
    if a.ztunnel_policies.is_empty() {
        writeln!(out, "   (none)")?;
    }
    for p in &a.ztunnel_policies {
        writeln!(out, "   {p}")?;
    }
    for n in &a.notes {
        writeln!(out, "Note: {n}")?;
    }
    Ok(())
}

/// Modelled on `istioctl x describe pod`, plus where each policy is and what is ignored.
pub fn describe(out: &mut dyn Write, workloads: &[WorkloadDescription]) -> io::Result<()> {
    for (i, w) in workloads.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(
            out,
            "Workload: {}.{} ({}:{})",
            w.name, w.namespace, w.file, w.line
        )?;
        let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "Labels: {}",
            if labels.is_empty() {
                "(none)".into()
            } else {
                labels.join(", ")
            }
        )?;
        if let Some(a) = &w.ambient {
            ambient(out, a)?;
        } else if w.sidecar {
            writeln!(out, "Sidecar: yes")?;
        } else {
            writeln!(
                out,
                "Sidecar: no (PeerAuthentication does not apply; it accepts plaintext only. Modes below apply once injected)"
            )?;
        }
        writeln!(
            out,
            "{}",
            if w.ambient.is_some() {
                "PeerAuthentication as istiod composes it (for a sidecar; ztunnel enforces only STRICT or not, above):"
            } else {
                "Effective PeerAuthentication:"
            }
        )?;
        writeln!(
            out,
            "   Workload mTLS mode: {} ({})",
            w.workload.mode,
            decided(&w.workload)
        )?;
        if !w.ports.is_empty() {
            writeln!(out, "   Port Level mTLS mode:")?;
            for p in &w.ports {
                writeln!(
                    out,
                    "      {}: {} ({}){}",
                    p.port,
                    p.resolution.mode,
                    decided(&p.resolution),
                    if p.undeclared {
                        "; no container or Service port declares it: istiod's passthrough chain applies it to traffic to the pod IP"
                    } else {
                        ""
                    }
                )?;
            }
        }
        writeln!(out, "Applied PeerAuthentication:")?;
        if w.applied.is_empty() {
            writeln!(out, "   (none)")?;
        }
        for p in &w.applied {
            writeln!(out, "   {} ({}:{})", dotted(p), p.file, p.line)?;
        }
        writeln!(out, "Ignored PeerAuthentication:")?;
        if w.ignored.is_empty() {
            writeln!(out, "   (none)")?;
        }
        for ig in &w.ignored {
            writeln!(
                out,
                "   {} ({}:{}): {}",
                dotted(&ig.policy),
                ig.policy.file,
                ig.policy.line,
                ig.message
            )?;
        }
        writeln!(out, "Decision (workload level):")?;
        writeln!(
            out,
            "   {:<10} {:<28} {:<10} -> PERMISSIVE",
            "start", "(Istio default)", ""
        )?;
        for s in &w.workload.steps {
            let policy = s.policy.as_ref().map(dotted).unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "   {:<10} {:<28} {:<10} -> {}",
                level_name(s.level),
                policy,
                s.declared.as_str(),
                s.effective
            )?;
        }
    }
    Ok(())
}

/// The matrix's data-plane line, printed only when some workload is ambient
/// (a sidecar-only mesh's output stays as it was): which workloads ztunnel
/// captures, which have sidecars, which are outside the mesh.
pub fn data_planes(out: &mut dyn Write, workloads: &[policy::mesh::Workload]) -> io::Result<()> {
    use policy::ambient::DataPlane;
    if !workloads.iter().any(|w| w.ambient) {
        return Ok(());
    }
    let mut parts = Vec::new();
    for (plane, label) in [
        (DataPlane::Ambient, "ambient (ztunnel, HBONE)"),
        (DataPlane::Sidecar, "sidecar"),
        (DataPlane::None, "outside the mesh"),
    ] {
        let mut names: Vec<String> = workloads
            .iter()
            .filter(|w| w.data_plane() == plane)
            .map(|w| format!("{}.{}", w.name, w.namespace))
            .collect();
        if names.is_empty() {
            continue;
        }
        names.sort();
        let more = names.len().saturating_sub(20);
        names.truncate(20);
        let mut list = names.join(", ");
        if more > 0 {
            list.push_str(&format!(" and {more} more"));
        }
        parts.push(format!("{label}: {list}"));
    }
    writeln!(out, "(data plane: {})", parts.join("; "))
}
