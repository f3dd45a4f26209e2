//! The shipped alert rules (`config/prometheus/alerts.yml`) and Grafana dashboard (`config/grafana/outboxd.json`)
//! parse, and every PromQL expression in them names only metrics that `src/metrics.rs` defines (histograms with
//! their `_bucket`/`_sum`/`_count` series) and known PromQL functions: a renamed metric fails here, not on a
//! dashboard in production. No service needed.

use std::collections::{BTreeMap, BTreeSet};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The metric names of `src/metrics.rs` (`pub const X: &str = "name";`), each with the series names it exports.
fn metrics() -> BTreeMap<String, Vec<String>> {
    let source = read("crates/outboxd/src/metrics.rs");
    let mut consts = BTreeMap::new();
    for line in source.lines() {
        let Some(rest) = line.trim().strip_prefix("pub const ") else {
            continue;
        };
        let (name, value) = rest.split_once(": &str = ").unwrap_or_else(|| panic!("{line}"));
        let value = value.trim_end_matches(';').trim_matches('"');
        consts.insert(name.to_string(), value.to_string());
    }
    let histograms: BTreeSet<&str> = source
        .split("describe_histogram!(")
        .skip(1)
        .filter_map(|s| s.trim_start().split(',').next())
        .map(str::trim)
        .collect();
    consts
        .iter()
        .map(|(k, name)| {
            let series = if histograms.contains(k.as_str()) {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect()
            } else {
                vec![name.clone()]
            };
            (name.clone(), series)
        })
        .collect()
}

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "bottomk",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "delta",
    "deriv",
    "floor",
    "group",
    "histogram_quantile",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "last_over_time",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sort",
    "sort_desc",
    "stddev",
    "sum",
    "sum_over_time",
    "time",
    "topk",
    "vector",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names an expression selects, or what in it is not PromQL this checker knows.
fn selected(expr: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let (mut i, mut names) = (0, Vec::new());
    let skip_to = |i: usize, close: char| -> Result<usize, String> {
        chars[i..]
            .iter()
            .position(|&c| c == close)
            .map(|p| i + p + 1)
            .ok_or_else(|| format!("unclosed {close:?} in {expr}"))
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i = skip_to(i + 1, c)?;
        } else if c == '{' {
            i = skip_to(i + 1, '}')?; // label matchers
        } else if c == '[' {
            i = skip_to(i + 1, ']')?; // range
        } else if c == '$' {
            i += 1; // a Grafana variable ($__rate_interval, $instance)
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1; // numbers, durations
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) {
                if call {
                    i = skip_to(j + 1, ')')?;
                }
            } else if FUNCTIONS.contains(&word.as_str()) {
                // `sum by (x) (...)` puts the label list between the aggregation and its argument.
            } else if call {
                return Err(format!("unknown function {word}() in {expr}"));
            } else if !KEYWORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// Checks every expression; returns the metrics (base names) they use.
fn check_exprs(origin: &str, exprs: &[String]) -> BTreeSet<String> {
    let metrics = metrics();
    let series: BTreeMap<&str, &str> = metrics
        .iter()
        .flat_map(|(base, s)| s.iter().map(move |x| (x.as_str(), base.as_str())))
        .collect();
    assert!(!exprs.is_empty(), "{origin}: no expression found");
    let mut used = BTreeSet::new();
    for expr in exprs {
        let names = selected(expr).unwrap_or_else(|e| panic!("{origin}: {e}"));
        assert!(!names.is_empty(), "{origin}: {expr} selects no metric");
        for name in names {
            let base = series.get(name.as_str()).unwrap_or_else(|| {
                panic!("{origin}: {expr} uses {name}, which src/metrics.rs does not export")
            });
            used.insert(base.to_string());
        }
    }
    used
}

#[test]
fn the_checker_knows_good_from_bad() {
    assert_eq!(
        selected(r#"sum by (le, instance) (rate(a_b_bucket{x="y",z=~"$v"}[5m])) / on (instance) c > 0.05"#),
        Ok(vec!["a_b_bucket".into(), "c".into()])
    );
    assert!(selected("sume(rate(x[5m]))").unwrap_err().contains("sume"));
    let m = metrics();
    assert!(m.contains_key(outboxd::metrics::EVENTS_PRODUCED));
    assert!(m[outboxd::metrics::END_TO_END_LATENCY]
        .contains(&format!("{}_bucket", outboxd::metrics::END_TO_END_LATENCY)));
    assert_eq!(
        m[outboxd::metrics::SLOT_ACTIVE],
        vec![outboxd::metrics::SLOT_ACTIVE.to_string()]
    );
    assert!(m.len() >= 13, "{m:?}");
}

#[test]
fn alert_rules_parse_and_use_only_exported_metrics() {
    let docs = yaml_rust2::YamlLoader::load_from_str(&read("config/prometheus/alerts.yml"))
        .unwrap_or_else(|e| panic!("config/prometheus/alerts.yml is not YAML: {e}"));
    let groups = docs[0]["groups"].as_vec().expect("a `groups` list");
    let mut exprs = Vec::new();
    let mut alerts = BTreeSet::new();
    for group in groups {
        for rule in group["rules"].as_vec().expect("each group has `rules`") {
            let name = rule["alert"]
                .as_str()
                .expect("every rule is an alert with a name");
            assert!(alerts.insert(name.to_string()), "duplicate alert {name}");
            assert!(
                rule["labels"]["severity"].as_str().is_some(),
                "{name}: severity label"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            exprs.push(
                rule["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: expr"))
                    .to_string(),
            );
        }
    }
    let used = check_exprs("alerts.yml", &exprs);
    for needed in [
        outboxd::metrics::REPLICATION_LAG_BYTES,
        outboxd::metrics::DLQ_EVENTS,
        outboxd::metrics::EVENTS_PRODUCED,
        outboxd::metrics::KAFKA_TRANSACTIONS,
        outboxd::metrics::SLOT_ACTIVE,
        outboxd::metrics::PIPELINE_RESTARTS,
    ] {
        assert!(used.contains(needed), "no alert watches {needed}");
    }
    assert!(
        exprs.iter().any(|e| e.contains("> 0.05")),
        "the dead-letter alert fires above 5%"
    );
}

/// Every `expr` of the dashboard's panels (rows included) and the metrics named by its template queries.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    ("definition", serde_json::Value::String(d)) => {
                        // label_values(<metric>, <label>)
                        let inner = d
                            .strip_prefix("label_values(")
                            .and_then(|s| s.split(',').next())
                            .unwrap_or_else(|| panic!("unexpected template query {d}"));
                        out.push(inner.trim().to_string());
                    }
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_parses_and_uses_only_exported_metrics() {
    let text = read("config/grafana/outboxd.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("config/grafana/outboxd.json is not JSON: {e}"));
    assert!(dashboard["title"].as_str().is_some_and(|t| t.contains("outboxd")));
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: Vec<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(
        ids.len(),
        ids.iter().collect::<BTreeSet<_>>().len(),
        "panel ids are unique"
    );
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    let used = check_exprs("outboxd.json", &exprs);
    for needed in [
        outboxd::metrics::EVENTS_PRODUCED,
        outboxd::metrics::END_TO_END_LATENCY,
        outboxd::metrics::COMMIT_DURATION,
        outboxd::metrics::REPLICATION_LAG_BYTES,
        outboxd::metrics::DLQ_EVENTS,
        outboxd::metrics::SCHEMA_FAILURES,
        outboxd::metrics::REGISTRY_ERRORS,
        outboxd::metrics::SLOT_ACTIVE,
        outboxd::metrics::PIPELINE_RESTARTS,
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
    for q in ["0.5", "0.95", "0.99"] {
        let latency = format!(
            "histogram_quantile({q}, sum by (le) (rate({}_bucket",
            outboxd::metrics::END_TO_END_LATENCY
        );
        assert!(exprs.iter().any(|e| e.contains(&latency)), "p{q} latency panel");
    }
    let threshold = panels.iter().any(|p| {
        p["title"].as_str().is_some_and(|t| t.contains("5%"))
            && p["fieldConfig"]["defaults"]["thresholds"]["steps"]
                .as_array()
                .is_some_and(|s| s.iter().any(|step| step["value"].as_f64() == Some(0.05)))
    });
    assert!(threshold, "the dead-letter rate panel draws the 5% threshold");
}
