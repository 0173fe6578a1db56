//! `peerauth matrix`'s views of one matrix agree cell for cell: the streamed
//! `--json` document is the reference, and `--json-lines`, `--only`, the label
//! filters, the grouped summary and `--only`'s listing by client group are
//! checked against it on the seed lab's steps and on a generated mesh (issue
//! 18's shape).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{peerauth, scratch, step_files};
use peerauth_cli::json::{Cell, MatrixCell, MatrixDocument, Outcome};
use std::collections::BTreeMap;

/// Input sets: every seed-lab step, and a generated mesh of 200 workloads.
fn inputs() -> Vec<Vec<String>> {
    let mut sets: Vec<Vec<String>> = [
        "1-no-policy",
        "2-mesh-strict",
        "3-namespace-strict",
        "4-workload-strict",
        "5-port-level-disable",
        "6-precedence",
    ]
    .iter()
    .map(|s| step_files(s))
    .collect();
    // A directory per call: scratch() empties the one it names, and every test
    // calls this in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = scratch(&format!("views-{call}"));
    let path = dir.join("mesh-200.yaml");
    std::fs::write(&path, peerauth_cli::generate::mesh_text(200)).unwrap();
    sets.push(vec!["-f".into(), path.display().to_string()]);
    // Ambient callers and servers (HBONE cells).
    sets.push(vec!["-f".into(), "manifests/lab/ambient".into()]);
    // A half-migrated Service: bar's httpbin plus a Deployment without a
    // sidecar behind the same Service, bar STRICT (cells with other_endpoint).
    let path = dir.join("migration.yaml");
    std::fs::write(&path, MIGRATION).unwrap();
    let mut migration = step_files("1-no-policy");
    migration.extend(["-f".into(), path.display().to_string()]);
    // foo's own DestinationRule for bar's httpbin: foo's sidecars send
    // otherwise than every other namespace's there (a group of their own).
    let path = dir.join("own-rules.yaml");
    std::fs::write(&path, OWN_RULES).unwrap();
    let mut set = step_files("4-workload-strict");
    set.extend(["-f".into(), path.display().to_string()]);
    sets.push(set);
    sets.push(migration);
    sets
}

const OWN_RULES: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: to-bar, namespace: foo}
spec:
  host: httpbin.bar.svc.cluster.local
  trafficPolicy: {tls: {mode: DISABLE}}
";

const MIGRATION: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin-v2, namespace: bar}
spec:
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin, version: v2, sidecar.istio.io/inject: 'false'}}
    spec: {containers: [{name: httpbin, image: httpbin, ports: [{containerPort: 80}]}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bar}
spec: {mtls: {mode: STRICT}}
";

#[test]
fn a_half_migrated_service_names_the_endpoint_that_answers_otherwise_in_every_json_view() {
    let files = inputs().pop().unwrap();
    let full = document(&files, &[]);
    let c = full
        .cells
        .iter()
        .find(|c| {
            (c.client.namespace.as_str(), c.client.name.as_str()) == ("legacy", "sleep")
                && (c.service.namespace.as_str(), c.service.name.as_str()) == ("bar", "httpbin")
        })
        .unwrap();
    // The sidecar endpoint (STRICT) resets the plaintext caller; httpbin-v2 serves it.
    assert_eq!(c.outcome, Outcome::Reset, "{}", c.explanation);
    let other = c.other_endpoint.as_ref().unwrap();
    assert_eq!(
        (other.name.as_str(), other.outcome),
        ("httpbin-v2", Outcome::Allowed)
    );
    assert!(
        c.explanation.contains("httpbin-v2.bar (outside the mesh)"),
        "{}",
        c.explanation
    );
}

fn run(files: &[String], extra: &[&str]) -> common::Output {
    let mut args: Vec<&str> = vec!["matrix"];
    args.extend(files.iter().map(String::as_str));
    args.extend(extra);
    peerauth(&args)
}

fn document(files: &[String], extra: &[&str]) -> MatrixDocument {
    let mut args = extra.to_vec();
    args.push("--json");
    let out = run(files, &args);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stderr))
}

fn kind(c: &Cell) -> &'static str {
    match (c.outcome, c.mtls) {
        (Outcome::Allowed, true) => "mtls",
        (Outcome::Allowed, false) => "plaintext",
        (Outcome::Reset, _) => "reset",
        (Outcome::Failed, _) => "fail",
    }
}

#[test]
fn json_lines_stream_exactly_the_cells_of_the_json_document() {
    for files in inputs() {
        let full = document(&files, &[]);
        assert!(!full.cells.is_empty(), "{files:?}");
        let out = run(&files, &["--json-lines"]);
        let lines: Vec<MatrixCell> = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, full.cells, "{files:?}");
        assert_eq!(out.code, full.exit_code as i32);
        // The document's rows and columns are those of its cells.
        let mut clients: Vec<String> = full
            .cells
            .iter()
            .map(|c| format!("{}/{}", c.client.namespace, c.client.name))
            .collect();
        clients.dedup();
        assert_eq!(clients, full.clients);
        assert_eq!(
            full.cells.len(),
            full.clients.len() * full.services.len(),
            "{files:?}"
        );
    }
}

#[test]
fn only_keeps_exactly_the_cells_of_those_kinds_in_every_output() {
    for files in inputs() {
        let full = document(&files, &[]);
        for only in ["reset,fail", "plaintext", "mtls,reset", "fail"] {
            let kinds: Vec<&str> = only.split(',').collect();
            let want: Vec<MatrixCell> = full
                .cells
                .iter()
                .filter(|c| kinds.contains(&kind(c)))
                .cloned()
                .collect();
            let doc = document(&files, &["--only", only]);
            assert_eq!(doc.cells, want, "{only} {files:?}");
            assert_eq!(doc.clients, full.clients);
            let broken = want.iter().any(|c| c.outcome != Outcome::Allowed);
            assert_eq!(doc.exit_code, u8::from(broken), "{only} {files:?}");
            let lines = run(&files, &["--only", only, "--json-lines"]);
            let streamed: Vec<MatrixCell> = lines
                .stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(streamed, want, "{only} {files:?}");
            // The text list: one line per kept cell, naming it and explaining it.
            let text = run(&files, &["--only", only]);
            let listed: Vec<&str> = text.stdout.lines().collect();
            assert_eq!(listed.len(), want.len(), "{only} {files:?}");
            for (line, c) in listed.iter().zip(&want) {
                let expected = format!(
                    "{}.{} -> {}.{}:{}: {}",
                    c.client.name,
                    c.client.namespace,
                    c.service.name,
                    c.service.namespace,
                    c.service.port,
                    c.explanation
                );
                assert!(line.ends_with(&expected), "{line}\n{expected}");
            }
        }
    }
}

#[test]
fn label_filters_pick_the_same_cells_as_filtering_the_full_matrix() {
    for files in inputs() {
        let full = document(&files, &[]);
        let generated = files.iter().any(|f| f.ends_with("mesh-200.yaml"));
        // Deployments carry app=<their name> in both inputs.
        let (client, server) = if generated {
            ("app-1", "app-2")
        } else {
            ("sleep", "httpbin")
        };
        let doc = document(
            &files,
            &[
                "--client-label",
                &format!("app={client}"),
                "--server-label",
                &format!("app={server}"),
            ],
        );
        let want: Vec<MatrixCell> = full
            .cells
            .iter()
            .filter(|c| c.client.name == client && c.service.name == server)
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(doc.cells, want, "{files:?}");
    }
}

/// The grouped summary's lines: (client namespace, service namespace) → the
/// four counts, and the `all` line.
type Pairs = BTreeMap<(String, String), [u64; 4]>;

fn parse_grouped(text: &str) -> (Pairs, [u64; 4]) {
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("client namespace"), "{header}");
    let mut pairs = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let counts = |f: &[&str]| -> [u64; 4] {
            let n: Vec<u64> = f.iter().map(|x| x.parse().unwrap()).collect();
            [n[0], n[1], n[2], n[3]]
        };
        if fields.first() == Some(&"all") {
            return (pairs, counts(&fields[1..]));
        }
        assert_eq!(fields.len(), 6, "{line}");
        pairs.insert(
            (fields[0].to_string(), fields[1].to_string()),
            counts(&fields[2..]),
        );
    }
    panic!("no `all` line in\n{text}");
}

#[test]
fn the_grouped_summary_counts_the_full_matrix_per_namespace_pair() {
    for files in inputs() {
        let full = document(&files, &[]);
        let mut want = Pairs::new();
        let mut all = [0u64; 4];
        for c in &full.cells {
            let i = ["mtls", "plaintext", "reset", "fail"]
                .iter()
                .position(|k| *k == kind(c))
                .unwrap();
            want.entry((c.client.namespace.clone(), c.service.namespace.clone()))
                .or_default()[i] += 1;
            all[i] += 1;
        }
        let out = run(&files, &["--grouped"]);
        let (pairs, total) = parse_grouped(&out.stdout);
        assert_eq!(pairs, want, "{files:?}");
        assert_eq!(total, all);
        assert_eq!(out.code, full.exit_code as i32);
        // Filters apply to the summary too.
        let generated = files.iter().any(|f| f.ends_with("mesh-200.yaml"));
        let client = if generated { "app-3" } else { "sleep" };
        let out = run(
            &files,
            &["--grouped", "--client-label", &format!("app={client}")],
        );
        let (pairs, _) = parse_grouped(&out.stdout);
        let mut want = Pairs::new();
        for c in full.cells.iter().filter(|c| c.client.name == client) {
            let i = ["mtls", "plaintext", "reset", "fail"]
                .iter()
                .position(|k| *k == kind(c))
                .unwrap();
            want.entry((c.client.namespace.clone(), c.service.namespace.clone()))
                .or_default()[i] += 1;
        }
        assert_eq!(pairs, want, "{files:?}");
    }
}

#[test]
fn the_table_is_printed_when_it_fits_the_width_and_the_summary_when_it_does_not() {
    let files = step_files("6-precedence");
    let table = run(&files, &[]);
    assert!(
        table.stdout.starts_with("client \\ server"),
        "{}",
        table.stdout
    );
    let widest = table.stdout.lines().next().unwrap().len();
    assert_eq!(
        run(&files, &["--width", &widest.to_string()]).stdout,
        table.stdout
    );
    assert_eq!(
        run(&files, &["--full", "--width", "20"]).stdout,
        table.stdout
    );
    let narrow = run(&files, &["--width", &(widest - 1).to_string()]);
    assert!(
        narrow.stdout.starts_with("client namespace"),
        "{}",
        narrow.stdout
    );
    assert!(
        narrow
            .stdout
            .contains(&format!("characters wide, more than {} (", widest - 1)),
        "{}",
        narrow.stdout
    );
    assert_eq!(narrow.code, table.code);
    // COLUMNS is the default width.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peerauth"))
        .args([
            "matrix",
            "-f",
            "manifests/workloads",
            "-f",
            "manifests/steps/6-precedence",
        ])
        .current_dir(common::root())
        .env("COLUMNS", "40")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        run(&files, &["--width", "40"]).stdout
    );
}

/// `--only`'s listing by client group, read back: the groups' members
/// (`namespace/name`, by group number) and one entry per line.
struct GroupedList {
    why: Option<String>,
    groups: BTreeMap<usize, Vec<(String, String)>>,
    lines: Vec<GroupLine>,
    total: u64,
}

struct GroupLine {
    short: String,
    service: (String, String),
    port: u16,
    groups: Vec<usize>,
    clients: u64,
    /// The sentence after `each client`.
    explanation: String,
}

fn parse_group_list(text: &str) -> GroupedList {
    let mut lines = text.lines().peekable();
    let why = lines
        .next_if(|l| l.starts_with("Grouped: "))
        .map(str::to_string);
    assert_eq!(
        lines.next(),
        Some("Client groups (clients that send alike get the same answer from every port):"),
        "{text}"
    );
    let mut groups: BTreeMap<usize, Vec<(String, String)>> = BTreeMap::new();
    let mut current = 0;
    while let Some(line) = lines.next_if(|l| l.starts_with('G') || l.starts_with("    ")) {
        if let Some(member_line) = line.strip_prefix("    ") {
            let (ns, names) = member_line.split_once(": ").unwrap();
            for name in names.split(", ") {
                groups
                    .get_mut(&current)
                    .unwrap()
                    .push((ns.to_string(), name.to_string()));
            }
        } else {
            let (number, _) = line[1..].split_once(' ').unwrap();
            current = number.parse().unwrap();
            assert_eq!(current, groups.len() + 1, "{line}");
            groups.insert(current, Vec::new());
        }
    }
    let mut parsed = Vec::new();
    let mut total = None;
    for line in lines {
        if let Some((n, _)) = line.split_once(" cells in ") {
            total = Some(n.parse().unwrap());
            continue;
        }
        assert!(total.is_none(), "a line after the totals: {line}");
        let (short, rest) = line.split_once(": ").unwrap();
        let (column, rest) = rest.split_once(" <- ").unwrap();
        let (service, port) = column.rsplit_once(':').unwrap();
        let (name, namespace) = service.split_once('.').unwrap();
        let (names, rest) = rest.split_once(" (").unwrap();
        let (clients, rest) = rest.split_once(' ').unwrap();
        let (_, explanation) = rest.split_once("): each client").unwrap();
        parsed.push(GroupLine {
            short: short.to_string(),
            service: (namespace.to_string(), name.to_string()),
            port: port.parse().unwrap(),
            groups: names
                .split(", ")
                .map(|g| g.strip_prefix('G').unwrap().parse().unwrap())
                .collect(),
            clients: clients.parse().unwrap(),
            explanation: explanation.to_string(),
        });
    }
    GroupedList {
        why,
        groups,
        lines: parsed,
        total: total.unwrap_or_else(|| panic!("no totals line in\n{text}")),
    }
}

/// A cell as both views name it: client, Service, port, kind, explanation.
type Named = (String, String, String, String, u16, &'static str, String);

/// The cells a grouped listing stands for: each line for each member of its groups.
fn expand(list: &GroupedList) -> Vec<Named> {
    let mut cells = Vec::new();
    for line in &list.lines {
        let kind = match line.short.as_str() {
            "200 mTLS" => "mtls",
            "200 plain" | "200 TLS" => "plaintext",
            "reset" => "reset",
            "fail" => "fail",
            other => panic!("unknown cell {other}"),
        };
        let mut members = 0;
        for g in &line.groups {
            for (ns, name) in &list.groups[g] {
                members += 1;
                cells.push((
                    ns.clone(),
                    name.clone(),
                    line.service.0.clone(),
                    line.service.1.clone(),
                    line.port,
                    kind,
                    format!("{name}.{ns}{}", line.explanation),
                ));
            }
        }
        assert_eq!(members, line.clients, "{}", line.explanation);
    }
    cells.sort();
    cells
}

fn named(cells: &[MatrixCell]) -> Vec<Named> {
    let mut named: Vec<Named> = cells
        .iter()
        .map(|c| {
            (
                c.client.namespace.clone(),
                c.client.name.clone(),
                c.service.namespace.clone(),
                c.service.name.clone(),
                c.service.port,
                kind(c),
                c.explanation.clone(),
            )
        })
        .collect();
    named.sort();
    named
}

#[test]
fn the_listing_by_client_group_expands_to_exactly_the_cells_of_only() {
    for files in inputs() {
        for only in ["reset,fail", "plaintext", "mtls,reset"] {
            let doc = document(&files, &["--only", only]);
            let out = run(&files, &["--only", only, "--grouped"]);
            let list = parse_group_list(&out.stdout);
            // Asked for, so no reason is given.
            assert_eq!(list.why, None);
            let cells = expand(&list);
            // Every cell once, its explanation the group's with the client named.
            assert_eq!(cells, named(&doc.cells), "{only} {files:?}\n{}", out.stdout);
            assert_eq!(list.total, doc.cells.len() as u64);
            assert_eq!(out.code, doc.exit_code as i32, "{only} {files:?}");
            // Each member is in one group, every group listed answers some
            // line, and its members are rows of the matrix.
            for g in list.groups.keys() {
                assert!(list.lines.iter().any(|l| l.groups.contains(g)), "G{g}");
            }
            let mut members: Vec<&(String, String)> = list.groups.values().flatten().collect();
            let all = members.len();
            members.sort();
            members.dedup();
            assert_eq!(members.len(), all, "{files:?}");
            for (ns, name) in members {
                assert!(doc.clients.contains(&format!("{ns}/{name}")), "{ns}/{name}");
            }
            // Below a million cells the listing is per cell unless asked for.
            let plain = run(&files, &["--only", only]);
            assert_eq!(plain.stdout.lines().count(), doc.cells.len());
            assert_eq!(
                run(&files, &["--only", only, "--full"]).stdout,
                plain.stdout
            );
        }
    }
}

#[test]
fn a_namespace_whose_own_destination_rule_changes_what_it_sends_is_a_group_of_its_own() {
    let files = inputs()
        .into_iter()
        .find(|set| set.iter().any(|f| f.ends_with("own-rules.yaml")))
        .unwrap();
    let out = run(&files, &["--only", "reset,fail", "--grouped"]);
    let list = parse_group_list(&out.stdout);
    let foo: Vec<(String, String)> = ["sleep", "httpbin"]
        .iter()
        .map(|n| ("foo".to_string(), n.to_string()))
        .collect();
    let own = list
        .groups
        .iter()
        .find(|(_, members)| members.iter().all(|(ns, _)| ns == "foo"))
        .map(|(g, m)| (*g, m.clone()));
    let (g, mut members) = own.expect("foo's sidecars in a group of their own");
    members.sort();
    let mut want = foo;
    want.sort();
    assert_eq!(members, want, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("sidecar in foo, whose own DestinationRules change what they send"),
        "{}",
        out.stdout
    );
    // Its DISABLE towards bar's STRICT httpbin is reset, for it alone.
    let line = list
        .lines
        .iter()
        .find(|l| l.groups.contains(&g))
        .expect("a line for foo's group");
    assert_eq!(line.groups, [g]);
    assert_eq!(line.service, ("bar".to_string(), "httpbin".to_string()));
    assert!(
        line.explanation
            .contains("because DestinationRule foo/to-bar sets DISABLE"),
        "{}",
        line.explanation
    );
}

#[test]
fn with_label_filters_the_groups_hold_only_the_kept_clients() {
    for files in inputs() {
        let generated = files.iter().any(|f| f.ends_with("mesh-200.yaml"));
        let (client, server) = if generated {
            ("app-1", "app-2")
        } else {
            ("sleep", "httpbin")
        };
        let filters = [
            "--client-label",
            &format!("app={client}"),
            "--server-label",
            &format!("app={server}"),
        ]
        .map(String::from);
        let mut args: Vec<&str> = filters.iter().map(String::as_str).collect();
        args.extend(["--only", "reset,plaintext"]);
        let doc = document(&files, &args);
        args.push("--grouped");
        let out = run(&files, &args);
        let list = parse_group_list(&out.stdout);
        assert_eq!(expand(&list), named(&doc.cells), "{files:?}");
        for (ns, name) in list.groups.values().flatten() {
            assert_eq!(name, client, "{ns}/{name} is not a kept client");
        }
        for line in &list.lines {
            assert_eq!(line.service.1, server, "{}", line.explanation);
        }
    }
}

#[test]
fn above_a_million_cells_only_lists_by_client_group_and_says_why() {
    let dir = scratch("views-large");
    let path = dir.join("mesh-1000.yaml");
    std::fs::write(&path, peerauth_cli::generate::mesh_text(1000)).unwrap();
    let files = vec!["-f".to_string(), path.display().to_string()];
    // 1,000 clients × 2,000 Service ports, nearly all of them succeeding.
    let (_, total) = parse_grouped(&run(&files, &["--grouped"]).stdout);
    let succeeding = total[0] + total[1];
    assert!(succeeding > 1_000_000, "{total:?}");
    let out = run(&files, &["--only", "mtls,plaintext"]);
    let list = parse_group_list(&out.stdout);
    assert_eq!(
        list.why.as_deref(),
        Some(
            format!(
                "Grouped: the listing would have {succeeding} cells, more than 1000000; --full lists each cell."
            )
            .as_str()
        )
    );
    assert_eq!(list.total, succeeding);
    assert_eq!(
        list.lines.iter().map(|l| l.clients).sum::<u64>(),
        succeeding
    );
    // Every client is named once: no sidecar (one namespace in five) and sidecar.
    assert_eq!(list.groups.values().map(Vec::len).sum::<usize>(), 1000);
    assert_eq!(list.groups.len(), 2, "{}", &out.stdout[..2000]);
    assert_eq!(out.code, 0);
    // The cells that fail are fewer: listed one by one.
    let reset = run(&files, &["--only", "reset,fail"]);
    assert_eq!(reset.stdout.lines().count() as u64, total[2] + total[3]);
    assert_eq!(reset.code, 1);
}
