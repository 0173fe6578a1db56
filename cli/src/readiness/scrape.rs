//! Reading what the filter recorded: its counters in Prometheus text exposition
//! (Envoy's `/stats/prometheus`) or a Prometheus HTTP API query answer, and its
//! log lines (`peerauth: outcome=… source="ip:port"`, filter/README.md "Metrics").

use std::collections::BTreeMap;

/// The filter's counter names (filter/README.md "Metrics").
pub const REQUESTS: &str = "peerauth_requests_total";
pub const CONNECTIONS: &str = "peerauth_connections_total";
pub const FORGED: &str = "peerauth_xfcc_forged_total";

/// Labels that say which pod a series belongs to, as Prometheus' Kubernetes
/// service discovery (and the Prometheus Operator) attach them.
const POD_LABELS: [&str; 2] = ["pod", "kubernetes_pod_name"];
const NAMESPACE_LABELS: [&str; 2] = ["namespace", "kubernetes_namespace"];
/// The filter's own labels; everything else (job, instance, …) is the scraper's.
const FILTER_LABELS: [&str; 7] = [
    "port", "mode", "security", "outcome", "reason", "form", "handling",
];

/// `(namespace if labelled, pod)` from a series' labels.
pub type SeriesPod = Option<(Option<String>, String)>;

/// One reading of one filter counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `(namespace, pod)` from the series' labels, else `None` (the file's pod applies).
    pub pod: SeriesPod,
    pub metric: String,
    /// Only the filter's own labels.
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub line: u32,
}

/// What one metrics input held.
#[derive(Debug, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Lines of other metrics seen (to tell an empty file from a scrape without the filter).
    pub other_series: usize,
    /// Series whose name ends in a filter counter's name without being it: Envoy
    /// without the tag-extraction rules (the labels are still in the name).
    pub encoded_names: usize,
}

/// Parse Prometheus text exposition, or Prometheus HTTP API JSON when the text
/// starts with `{`. `Err` is one line naming the line or field at fault.
pub fn parse_metrics(text: &str) -> Result<Scrape, String> {
    if text.trim_start().starts_with('{') {
        parse_api(text)
    } else {
        parse_text(text)
    }
}

fn keep(metric: &str) -> bool {
    metric == REQUESTS || metric == CONNECTIONS || metric == FORGED
}

fn is_encoded(metric: &str) -> bool {
    !keep(metric)
        && [REQUESTS, CONNECTIONS, FORGED]
            .iter()
            .any(|m| metric.ends_with(m))
}

fn split_labels(all: BTreeMap<String, String>) -> (SeriesPod, BTreeMap<String, String>) {
    let pod = POD_LABELS.iter().find_map(|k| all.get(*k).cloned());
    let namespace = NAMESPACE_LABELS.iter().find_map(|k| all.get(*k).cloned());
    let own = all
        .into_iter()
        .filter(|(k, _)| FILTER_LABELS.contains(&k.as_str()))
        .collect();
    (pod.map(|p| (namespace, p)), own)
}

fn parse_text(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (metric, labels, rest) = series(line).map_err(|e| format!("line {n}: {e}"))?;
        if is_encoded(metric) {
            scrape.encoded_names += 1;
        }
        if !keep(metric) {
            scrape.other_series += 1;
            continue;
        }
        let value = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| format!("line {n}: {metric} has no value"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("line {n}: {metric} value {value:?} is not a number"))?;
        let (pod, labels) = split_labels(labels);
        scrape.samples.push(Sample {
            pod,
            metric: metric.to_string(),
            labels,
            value,
            line: n,
        });
    }
    Ok(scrape)
}

/// `name{k="v",…} rest` or `name rest`.
fn series(line: &str) -> Result<(&str, BTreeMap<String, String>, &str), String> {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a metric without a value")?;
    let (name, mut rest) = line.split_at(end);
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((j, '}')) => {
                    rest = body.get(j + 1..).unwrap_or("");
                    break;
                }
                None => return Err(format!("{name}: unterminated label set")),
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("{name}: label {key:?} has no quoted value"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("{name}: label {key:?} value is not closed"));
            }
            labels.insert(key.trim().to_string(), value);
        }
    }
    Ok((name, labels, rest.trim()))
}

fn parse_api(text: &str) -> Result<Scrape, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if doc["status"] != "success" {
        return Err(format!(
            "the Prometheus answer's status is {} (error: {})",
            doc["status"], doc["error"]
        ));
    }
    let results = doc["data"]["result"]
        .as_array()
        .ok_or("data.result is not a list: not a Prometheus /api/v1/query answer")?;
    let mut scrape = Scrape::default();
    for (i, r) in results.iter().enumerate() {
        let Some(metric) = r["metric"].as_object() else {
            return Err(format!("data.result[{i}].metric is not an object"));
        };
        let labels: BTreeMap<String, String> = metric
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        let name = labels.get("__name__").cloned().unwrap_or_default();
        if is_encoded(&name) {
            scrape.encoded_names += 1;
        }
        if !keep(&name) {
            scrape.other_series += 1;
            continue;
        }
        // An instant query has `value`, a range query `values` (oldest first).
        let points: Vec<&serde_json::Value> = match (&r["value"], r["values"].as_array()) {
            (v @ serde_json::Value::Array(_), _) => vec![v],
            (_, Some(vs)) => vs.iter().collect(),
            _ => return Err(format!("data.result[{i}] has neither value nor values")),
        };
        let (pod, own) = split_labels(labels);
        for p in points {
            let value: f64 = p[1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("data.result[{i}]: value {} is not a number", p[1]))?;
            scrape.samples.push(Sample {
                pod: pod.clone(),
                metric: name.clone(),
                labels: own.clone(),
                value,
                line: 0,
            });
        }
    }
    Ok(scrape)
}

/// One filter log line (a rejection, a would-be rejection, a forgery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The pod from `kubectl logs --prefix` (`[pod/NAME/istio-proxy] …`).
    pub pod: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub line: u32,
}

impl LogLine {
    pub fn field(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }

    /// The source IP, without the port (`10.0.0.7:41234`, `[fd00::7]:41234`).
    pub fn source_ip(&self) -> Option<String> {
        let s = self.field("source")?;
        if let Some(rest) = s.strip_prefix('[') {
            return rest.split_once(']').map(|(ip, _)| ip.to_string());
        }
        match s.rsplit_once(':') {
            Some((ip, port)) if !ip.contains(':') && port.parse::<u16>().is_ok() => {
                Some(ip.to_string())
            }
            _ => Some(s.to_string()),
        }
    }
}

/// The filter's lines out of a proxy log, whatever precedes `peerauth: ` on the
/// line (Envoy's own log prefix, Istio's JSON-less text format, kubectl's `--prefix`).
pub fn parse_logs(text: &str) -> Vec<LogLine> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(at) = line.find("peerauth: ") else {
            continue;
        };
        let pod = line
            .strip_prefix("[pod/")
            .and_then(|r| r.split_once('/'))
            .map(|(p, _)| p.to_string());
        let fields = logfmt(line.get(at + "peerauth: ".len()..).unwrap_or(""));
        if !fields.contains_key("outcome") {
            continue;
        }
        out.push(LogLine {
            pod,
            fields,
            line: u32::try_from(i + 1).unwrap_or(u32::MAX),
        });
    }
    out
}

fn logfmt(s: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.insert(key, value);
    }
    fields
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn text_exposition_keeps_the_filters_series_with_their_labels_and_pod() {
        let text = "# TYPE peerauth_requests_total counter\n\
            peerauth_requests_total{port=\"80\",mode=\"STRICT\",security=\"plaintext\",outcome=\"would_reject\",reason=\"plaintext_on_strict\"} 4\n\
            peerauth_xfcc_forged_total{pod=\"httpbin-1\",namespace=\"foo\",instance=\"10.0.0.5:15090\",port=\"80\",form=\"smuggled\",handling=\"rejected\"} 2 1700000000000\n\
            envoy_server_live{} 1\n\
            wasmcustom_port___80_____peerauth_requests_total 3\n";
        let s = parse_metrics(text).unwrap();
        assert_eq!(s.samples.len(), 2);
        assert_eq!(s.samples[0].labels["security"], "plaintext");
        assert_eq!(s.samples[0].value, 4.0);
        assert_eq!(s.samples[0].pod, None);
        assert_eq!(
            s.samples[1].pod,
            Some((Some("foo".into()), "httpbin-1".into()))
        );
        assert!(!s.samples[1].labels.contains_key("instance"));
        assert_eq!((s.other_series, s.encoded_names), (2, 1));
        assert!(parse_metrics("peerauth_requests_total{port=\"80} 1\n").is_err());
    }

    #[test]
    fn a_prometheus_api_answer_gives_one_sample_per_point() {
        let json = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"peerauth_requests_total","pod":"a","namespace":"foo","port":"80","security":"mutual_tls"},
             "values":[[1,"3"],[2,"5"]]}]}}"#;
        let s = parse_metrics(json).unwrap();
        assert_eq!(
            s.samples.iter().map(|x| x.value).collect::<Vec<_>>(),
            [3.0, 5.0]
        );
        assert!(parse_metrics(r#"{"status":"error","error":"bad query"}"#).is_err());
    }

    #[test]
    fn log_lines_are_found_after_any_prefix_and_read_as_logfmt() {
        let log = "[pod/httpbin-7d/istio-proxy] 2026-12-01T18:32:07Z\twarning\tenvoy wasm\twasm log foo.peerauth-audit: peerauth: outcome=would_reject reason=plaintext_on_strict port=80 mode=STRICT security=plaintext peer=\"-\" source=\"10.244.0.6:51102\"\n\
            unrelated line\n";
        let l = parse_logs(log);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].pod.as_deref(), Some("httpbin-7d"));
        assert_eq!(l[0].field("port"), Some("80"));
        assert_eq!(l[0].source_ip().as_deref(), Some("10.244.0.6"));
    }
}
