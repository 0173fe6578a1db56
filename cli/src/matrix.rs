//! `peerauth matrix`, streamed: filters pick clients and Services before any
//! cell is computed, and cells are written as they are computed, so memory
//! does not depend on the number of cells. The text view is the full table,
//! or, when that would be wider than the terminal, a summary per namespace
//! pair (counted without visiting the cells). `--only` lists cells one per
//! line, or, above [`MAX_TABLE_CELLS`], per Service port and client group
//! (computed per group, without visiting the cells either).

use crate::cli::{MatrixArgs, Only};
use crate::{convert, human, json, Loaded, EXIT_FINDINGS, EXIT_INPUT, EXIT_OK};
use policy::mesh::{Service, Workload};
use policy::reach::{Call, Counts, Grouped, Outcome, Reach, Select};
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use std::io::{self, Write};

/// Above this many cells the text view is the summary unless `--full` asks
/// for the table: a pipe without a known width should not get gigabytes.
pub const MAX_TABLE_CELLS: u64 = 1_000_000;

/// Whether `--only` keeps a cell (every cell when it is not given).
fn kept(only: &[Only], outcome: Outcome, mtls: bool) -> bool {
    only.is_empty()
        || only.iter().any(|o| match o {
            Only::Mtls => outcome == Outcome::Allowed && mtls,
            Only::Plaintext => outcome == Outcome::Allowed && !mtls,
            Only::Reset => outcome == Outcome::Reset,
            Only::Fail => outcome == Outcome::Failed,
        })
}

/// The cells of `counts` that `--only` keeps.
fn kept_counts(only: &[Only], counts: &Counts) -> Counts {
    let keep = |outcome, mtls, n: u64| if kept(only, outcome, mtls) { n } else { 0 };
    Counts {
        mtls: keep(Outcome::Allowed, true, counts.mtls),
        plaintext: keep(Outcome::Allowed, false, counts.plaintext),
        reset: keep(Outcome::Reset, false, counts.reset),
        failed: keep(Outcome::Failed, false, counts.failed),
    }
}

/// Whether `labels` contain every `want` pair.
fn has_labels(
    labels: &std::collections::BTreeMap<String, String>,
    want: &[(String, String)],
) -> bool {
    want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn run(
    args: &MatrixArgs,
    mut loaded: Loaded,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    let mesh = &loaded.report.mesh;
    let reach = mesh.reach();
    let client = |w: &Workload| has_labels(&w.labels, &args.client_label);
    // A Service is a server when a pod it selects carries the labels (or, with
    // no such pod in the files, when its own selector does).
    let service = |s: &Service| {
        let mut selected = reach.endpoints(s).peekable();
        if selected.peek().is_none() {
            has_labels(&s.selector, &args.server_label)
        } else {
            selected.any(|w| has_labels(&w.labels, &args.server_label))
        }
    };
    let only = args.only.as_slice();
    let cell = |outcome: Outcome, mtls: bool| kept(only, outcome, mtls);
    let select = Select {
        client: &client,
        service: &service,
        cell: &cell,
    };
    let (clients, columns) = reach.axes(&select);
    if clients.is_empty() {
        let message = match (args.client_label.is_empty(), args.server_label.is_empty()) {
            (true, true) => {
                "no client × service pair: the files define no workload or no Service with ports"
                    .into()
            }
            _ => format!(
                "no client × service pair matches{}{}",
                if args.client_label.is_empty() {
                    String::new()
                } else {
                    format!(" client labels {}", crate::labels_text(&args.client_label))
                },
                if args.server_label.is_empty() {
                    String::new()
                } else {
                    format!(" server labels {}", crate::labels_text(&args.server_label))
                },
            ),
        };
        loaded
            .diagnostics
            .push(crate::rules::INPUT_EMPTY_MATRIX.diagnostic(
                message,
                "check the -f paths and the --client-label/--server-label filters",
            ));
    }
    let summary = crate::summarize(&loaded.diagnostics);
    let code = |shown: &Counts| {
        if summary.input_errors > 0 {
            EXIT_INPUT
        } else if shown.reset + shown.failed > 0 {
            EXIT_FINDINGS
        } else {
            EXIT_OK
        }
    };
    if args.output.json {
        // The exit code leads the document, so the cells are counted first
        // (per namespace pair, without visiting them), then streamed.
        let mut total = Counts::default();
        reach.summary(&select, &mut |pair| total.add_counts(&pair.counts));
        let code = code(&kept_counts(only, &total));
        let doc = Document {
            version: json::VERSION,
            command: "matrix",
            exit_code: code,
            inputs: &loaded.inputs,
            summary,
            diagnostics: loaded.diagnostics.iter().map(convert::diagnostic).collect(),
            clients: clients
                .iter()
                .map(|w| format!("{}/{}", w.namespace, w.name))
                .collect(),
            services: columns
                .iter()
                .map(|(s, port)| format!("{}/{}:{port}", s.namespace, s.name))
                .collect(),
            data_planes: data_planes(&mesh.workloads),
            cells: Cells {
                reach: &reach,
                select: &select,
            },
        };
        serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::other)?;
        writeln!(out)?;
        return Ok(code);
    }
    let shown = if args.json_lines {
        json_lines(out, &reach, &select)?
    } else if !only.is_empty() {
        if args.full {
            list(out, &reach, &select)?
        } else {
            let groups = reach.groups(&select);
            let (counts, answered) = answered(&groups);
            let cells = counts.total();
            if !args.grouped && cells <= MAX_TABLE_CELLS {
                list(out, &reach, &select)?
            } else {
                let why = if args.grouped {
                    String::new()
                } else {
                    format!(
                        "Grouped: the listing would have {cells} cells, more than {MAX_TABLE_CELLS}; --full lists each cell.\n"
                    )
                };
                list_grouped(out, &groups, &answered, &why)?
            }
        }
    } else {
        let table = Table::new(&clients, &columns);
        let cells = clients.len() as u64 * columns.len() as u64;
        let too_wide = args.width.is_some_and(|w| table.width > w);
        if args.full || (!args.grouped && !too_wide && cells <= MAX_TABLE_CELLS) {
            table.write(out, &reach, &select)?
        } else {
            let why = if args.grouped {
                String::new()
            } else if too_wide {
                format!(
                    "Grouped: the table is {} characters wide, more than {} (--width, COLUMNS). ",
                    table.width,
                    args.width.unwrap_or(0)
                )
            } else {
                format!(
                    "Grouped: the table would have {cells} cells, more than {MAX_TABLE_CELLS}. "
                )
            };
            grouped(out, &reach, &select, (&clients, &columns), &why)?
        }
    };
    human::input_errors(err, &loaded.diagnostics)?;
    Ok(code(&shown))
}

/// `peerauth matrix --json`: [`json::MatrixDocument`], with the cells
/// serialized as they are computed.
#[derive(Serialize)]
struct Document<'a> {
    version: &'a str,
    command: &'a str,
    exit_code: u8,
    inputs: &'a json::Inputs,
    summary: json::Summary,
    diagnostics: Vec<json::Diagnostic>,
    clients: Vec<String>,
    services: Vec<String>,
    data_planes: Vec<json::WorkloadDataPlane>,
    cells: Cells<'a>,
}

/// [`json::MatrixDocument::data_planes`]: every workload, sorted.
fn data_planes(workloads: &[Workload]) -> Vec<json::WorkloadDataPlane> {
    let mut out: Vec<json::WorkloadDataPlane> = workloads
        .iter()
        .map(|w| json::WorkloadDataPlane {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            data_plane: w.data_plane(),
            waypoint: w.use_waypoint.clone(),
        })
        .collect();
    policy::order::sort_by(&mut out, |a, b| {
        (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
    });
    out
}

/// A [`json::MatrixCell`] borrowing from the mesh: the contract's cell,
/// then what carries it and a differing endpoint.
#[derive(Serialize)]
struct CellOut<'a> {
    #[serde(flatten)]
    cell: convert::CellRef<'a>,
    transport: json::Transport,
    #[serde(skip_serializing_if = "Option::is_none")]
    other_endpoint: Option<json::EndpointCell>,
}

/// The keys [`CellOut`] adds to a cell, as compact JSON after a comma
/// (`"transport":"hbone"`, then `"other_endpoint":{…}` when there is one).
fn push_extra_keys(line: &mut Vec<u8>, call: &Call<'_>) {
    line.extend_from_slice(b",\"transport\":\"");
    line.extend_from_slice(call.transport.as_str().as_bytes());
    line.push(b'"');
    if let Some(other) = call.other.as_ref().map(|o| o.cell()) {
        line.extend_from_slice(b",\"other_endpoint\":");
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *line, &other);
    }
}

struct Cells<'a> {
    reach: &'a Reach<'a>,
    select: &'a Select<'a>,
}

impl Serialize for Cells<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        let mut failed = None;
        let mut explanation = String::new();
        self.reach.calls_while(self.select, &mut |call| {
            explanation.clear();
            call.explain_into(&mut explanation);
            let cell = CellOut {
                cell: convert::call(&call, &explanation),
                transport: call.transport,
                other_endpoint: call.other.as_ref().map(|o| o.cell()),
            };
            match seq.serialize_element(&cell) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        });
        match failed {
            Some(e) => Err(e),
            None => seq.end(),
        }
    }
}

/// `--json-lines`: one [`json::MatrixCell`] per line. Returns the cells written, counted.
fn json_lines(out: &mut dyn Write, reach: &Reach<'_>, select: &Select<'_>) -> io::Result<Counts> {
    let mut failed = None;
    let mut shown = Counts::default();
    let mut explanation = String::new();
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    reach.calls_while(select, &mut |call| {
        shown.add(call.outcome, call.mtls);
        explanation.clear();
        call.explain_into(&mut explanation);
        line.clear();
        convert::write_call_line(&mut line, &call, &explanation);
        // The contract's cell ends the line with `}\n`: the matrix's keys go before it.
        if line.ends_with(b"}\n") {
            line.truncate(line.len() - 2);
            push_extra_keys(&mut line, &call);
            line.extend_from_slice(b"}\n");
        }
        match out.write_all(&line) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    failed.map_or(Ok(shown), Err)
}

/// `200 mTLS`, `200 plain`, `reset`, `fail`: a cell as the table shows it.
fn short(call: &Call<'_>) -> &'static str {
    match (call.outcome, call.mtls, call.client_tls) {
        (Outcome::Allowed, true, _) => "200 mTLS",
        (Outcome::Allowed, false, policy::reach::ClientTls::OtherTls) => "200 TLS",
        (Outcome::Allowed, false, _) => "200 plain",
        (Outcome::Reset, _, _) => "reset",
        (Outcome::Failed, _, _) => "fail",
    }
}

/// `reset: sleep.legacy -> httpbin.foo:8000: <explanation>`, one line per
/// call `select` keeps (the lines under the full table). Returns them, counted.
fn list(out: &mut dyn Write, reach: &Reach<'_>, select: &Select<'_>) -> io::Result<Counts> {
    let mut failed = None;
    let mut shown = Counts::default();
    let mut line = String::with_capacity(256);
    reach.calls_while(select, &mut |call| {
        shown.add(call.outcome, call.mtls);
        line.clear();
        let (c, s) = (call.client, call.service);
        line.push_str(short(&call));
        line.push_str(": ");
        for part in [
            &c.name,
            ".",
            &c.namespace,
            " -> ",
            &s.name,
            ".",
            &s.namespace,
            ":",
        ] {
            line.push_str(part);
        }
        line.push_str(&call.service_port.to_string());
        line.push_str(": ");
        call.explain_into(&mut line);
        line.push('\n');
        match out.write_all(line.as_bytes()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    failed.map_or(Ok(shown), Err)
}

/// The cells `grouped` stands for, counted, and which of its groups any
/// kept cell answers.
fn answered(grouped: &Grouped<'_>) -> (Counts, Vec<bool>) {
    let mut counts = Counts::default();
    let mut answered = vec![false; grouped.groups().len()];
    grouped.calls_while(&mut |g| {
        counts.add_times(g.call.outcome, g.call.mtls, g.clients);
        for &i in g.groups {
            if let Some(a) = answered.get_mut(i) {
                *a = true;
            }
        }
        true
    });
    (counts, answered)
}

/// `--only` when listing each cell would be too much (or with `--grouped`):
/// the client groups, each member named once (one line per namespace), then
/// `reset: httpbin.foo:8000 <- G1 (3 clients): each client sends …`, one
/// line per Service port and the groups it answers alike. Expanding each
/// line to its groups' members gives the cells `list` would print, in
/// Service order instead of client order. Returns the cells, counted.
fn list_grouped(
    out: &mut dyn Write,
    grouped: &Grouped<'_>,
    answered: &[bool],
    why: &str,
) -> io::Result<Counts> {
    let mut buf: Vec<u8> = Vec::with_capacity(SUMMARY_BUFFER + 1024);
    buf.extend_from_slice(why.as_bytes());
    buf.extend_from_slice(
        b"Client groups (clients that send alike get the same answer from every port):\n",
    );
    // Groups without a kept cell are left out; the others are numbered G1, G2, … in order.
    let mut number = vec![0u64; answered.len()];
    let mut shown_groups = 0u64;
    for (n, a) in number.iter_mut().zip(answered) {
        if *a {
            shown_groups += 1;
            *n = shown_groups;
        }
    }
    let mut text = String::with_capacity(256);
    for (group, &n) in grouped.groups().iter().zip(&number) {
        if n == 0 {
            continue;
        }
        let namespaces = group
            .clients
            .windows(2)
            .filter(|w| w.first().map(|c| &c.namespace) != w.get(1).map(|c| &c.namespace))
            .count()
            + 1;
        text.clear();
        text.push_str(&format!(
            "G{n} ({} client{} in {namespaces} namespace{}): ",
            group.clients.len(),
            if group.clients.len() == 1 { "" } else { "s" },
            if namespaces == 1 { "" } else { "s" }
        ));
        group.sends.describe_into(&mut text);
        buf.extend_from_slice(text.as_bytes());
        let mut namespace: Option<&str> = None;
        for c in &group.clients {
            if namespace == Some(c.namespace.as_str()) {
                buf.extend_from_slice(b", ");
            } else {
                buf.extend_from_slice(b"\n    ");
                buf.extend_from_slice(c.namespace.as_bytes());
                buf.extend_from_slice(b": ");
                namespace = Some(&c.namespace);
            }
            buf.extend_from_slice(c.name.as_bytes());
            if buf.len() >= SUMMARY_BUFFER {
                out.write_all(&buf)?;
                buf.clear();
            }
        }
        buf.push(b'\n');
    }
    let mut failed = None;
    let mut shown = Counts::default();
    let mut lines = 0u64;
    grouped.calls_while(&mut |g| {
        lines += 1;
        shown.add_times(g.call.outcome, g.call.mtls, g.clients);
        let call = &g.call;
        text.clear();
        text.push_str(short(call));
        text.push_str(": ");
        for part in [&call.service.name, ".", &call.service.namespace, ":"] {
            text.push_str(part);
        }
        policy::reach::push_number(&mut text, u64::from(call.service_port));
        text.push_str(" <- ");
        for (n, group) in g.groups.iter().enumerate() {
            if n > 0 {
                text.push_str(", ");
            }
            text.push('G');
            policy::reach::push_number(&mut text, number.get(*group).copied().unwrap_or(0));
        }
        text.push_str(" (");
        policy::reach::push_number(&mut text, g.clients);
        text.push_str(if g.clients == 1 {
            " client): "
        } else {
            " clients): "
        });
        call.explain_group_into(&mut text);
        text.push('\n');
        buf.extend_from_slice(text.as_bytes());
        if buf.len() >= SUMMARY_BUFFER {
            if let Err(e) = out.write_all(&buf) {
                failed = Some(e);
                return false;
            }
            buf.clear();
        }
        true
    });
    if let Some(e) = failed {
        return Err(e);
    }
    out.write_all(&buf)?;
    writeln!(
        out,
        "{} cells in {lines} lines of {shown_groups} client group{} (reset {}, fail {}, 200 mTLS {}, 200 plain {}).",
        shown.total(),
        if shown_groups == 1 { "" } else { "s" },
        shown.reset,
        shown.failed,
        shown.mtls,
        shown.plaintext
    )?;
    Ok(shown)
}

const LEGEND: &str = "(200 mTLS: succeeds over Istio mTLS; 200 plain: succeeds in plaintext; reset: connection reset; fail: TLS reaches a plaintext app)";

/// The full table's layout: like the seed lab's `sleep.foo to httpbin.bar: 200`
/// table, clients are rows and Service ports columns.
struct Table {
    rows: Vec<String>,
    cols: Vec<String>,
    first: usize,
    widths: Vec<usize>,
    /// Characters in the widest line.
    width: usize,
}

impl Table {
    fn new(clients: &[&Workload], columns: &[(&Service, u16)]) -> Self {
        let rows: Vec<String> = clients
            .iter()
            .map(|w| format!("{}.{}", w.name, w.namespace))
            .collect();
        // `httpbin.bar:8000` — name.namespace as the seed lab writes it, plus the port.
        let cols: Vec<String> = columns
            .iter()
            .map(|(s, port)| format!("{}.{}:{port}", s.name, s.namespace))
            .collect();
        let first = rows
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max("client \\ server".len());
        let widths: Vec<usize> = cols
            .iter()
            .map(|c| c.len().max("200 plain".len()))
            .collect();
        let width = first + widths.iter().map(|w| w + 2).sum::<usize>();
        Self {
            rows,
            cols,
            first,
            widths,
            width,
        }
    }

    /// The table, the legend, then one line per request that does not
    /// succeed. Returns the cells, counted.
    fn write(
        &self,
        out: &mut dyn Write,
        reach: &Reach<'_>,
        select: &Select<'_>,
    ) -> io::Result<Counts> {
        let mut shown = Counts::default();
        if self.rows.is_empty() {
            return Ok(shown);
        }
        let first = self.first;
        let mut header = format!("{:<first$}", "client \\ server");
        for (c, w) in self.cols.iter().zip(&self.widths) {
            header.push_str(&format!("  {c:<w$}"));
        }
        writeln!(out, "{header}")?;
        // Cells come row by row, one per column, in the table's order.
        let mut failed = None;
        let mut line = String::new();
        let mut row = 0usize;
        let mut col = 0usize;
        reach.calls_while(select, &mut |call| {
            if col == 0 {
                line.clear();
                let name = self.rows.get(row).map_or("", String::as_str);
                line.push_str(&format!("{name:<first$}"));
            }
            let w = self.widths.get(col).copied().unwrap_or(0);
            line.push_str(&format!("  {:<w$}", short(&call)));
            shown.add(call.outcome, call.mtls);
            col += 1;
            if col == self.widths.len() {
                col = 0;
                row += 1;
                if let Err(e) = writeln!(out, "{}", line.trim_end()) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        });
        if let Some(e) = failed {
            return Err(e);
        }
        writeln!(out, "{LEGEND}")?;
        crate::human::data_planes(out, &reach.mesh().workloads)?;
        if shown.reset + shown.failed > 0 {
            writeln!(out)?;
            let broken_only = |outcome: Outcome, _mtls: bool| outcome != Outcome::Allowed;
            list(
                out,
                reach,
                &Select {
                    client: select.client,
                    service: select.service,
                    cell: &broken_only,
                },
            )?;
        }
        Ok(shown)
    }
}

/// The summary: one line per (client namespace, Service namespace) pair with
/// the number of cells of each kind, then the totals. Returns them.
fn grouped(
    out: &mut dyn Write,
    reach: &Reach<'_>,
    select: &Select<'_>,
    (clients, columns): (&[&Workload], &[(&Service, u16)]),
    why: &str,
) -> io::Result<Counts> {
    let client_w = clients
        .iter()
        .map(|w| w.namespace.len())
        .chain(["client namespace".len()])
        .max()
        .unwrap_or(0);
    let service_w = columns
        .iter()
        .map(|(s, _)| s.namespace.len())
        .chain(["service namespace".len()])
        .max()
        .unwrap_or(0);
    writeln!(
        out,
        "{:<client_w$}  {:<service_w$}  {:>9}  {:>9}  {:>9}  {:>9}",
        "client namespace", "service namespace", "200 mTLS", "200 plain", "reset", "fail"
    )?;
    let mut failed = None;
    let mut total = Counts::default();
    let mut pairs = 0u64;
    // Tens of millions of lines: written as bytes into one large buffer,
    // padded by hand, as `format!` and small writes cost more than the
    // counting.
    let mut buf: Vec<u8> = Vec::with_capacity(SUMMARY_BUFFER + 256);
    reach.summary(select, &mut |p| {
        if failed.is_some() {
            return;
        }
        pairs += 1;
        let c = p.counts;
        total.add_counts(&c);
        pad_right(&mut buf, p.client_namespace, client_w);
        buf.extend_from_slice(b"  ");
        pad_right(&mut buf, p.service_namespace, service_w);
        for n in [c.mtls, c.plaintext, c.reset, c.failed] {
            buf.extend_from_slice(b"  ");
            pad_number(&mut buf, n, 9);
        }
        buf.push(b'\n');
        if buf.len() >= SUMMARY_BUFFER {
            if let Err(e) = out.write_all(&buf) {
                failed = Some(e);
            }
            buf.clear();
        }
    });
    if failed.is_none() {
        if let Err(e) = out.write_all(&buf) {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    writeln!(
        out,
        "{:<client_w$}  {:<service_w$}  {:>9}  {:>9}  {:>9}  {:>9}",
        "all", "", total.mtls, total.plaintext, total.reset, total.failed
    )?;
    writeln!(out, "{LEGEND}")?;
    writeln!(out, "{} cells in {pairs} namespace pairs.", total.total())?;
    writeln!(
        out,
        "{why}--full prints the table; --only reset,fail lists the cells that fail."
    )?;
    Ok(total)
}

/// Bytes of summary lines gathered before each write.
const SUMMARY_BUFFER: usize = 1 << 16;

/// `s` left-aligned in `width` characters (as `{:<width$}`).
fn pad_right(line: &mut Vec<u8>, s: &str, width: usize) {
    line.extend_from_slice(s.as_bytes());
    let len = if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    };
    line.resize(line.len() + width.saturating_sub(len), b' ');
}

/// `n` right-aligned in `width` characters (as `{:>width$}`).
fn pad_number(line: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let digits = policy::reach::digits(n, &mut buf);
    line.resize(line.len() + width.saturating_sub(digits.len()), b' ');
    line.extend_from_slice(digits);
}
