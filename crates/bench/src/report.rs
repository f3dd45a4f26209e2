//! The tables: runs grouped by case, each figure as `median (min–max)` over the runs, ratios to the ceiling
//! of the same run, and the targets of issue 16 checked (issue 7's, the ones before, were looser).

use crate::debezium::PeerResult;
use crate::latency::LatencyResult;
use crate::stats::{thousands, Summary};
use crate::throughput::{RelayResult, ThroughputResult};
use std::fmt::Write;

/// End-to-end throughput over the ceiling that 100-row and 1-row transactions must reach.
const RATIO_TARGETS: &[(u64, f64)] = &[(100, 0.70), (1, 0.80)];
/// Largest p99 at 10,000 events/s, in microseconds.
const P99_TARGET_US: i64 = 25_000;
/// Largest peak RSS, in MB (10^6 bytes).
const RSS_TARGET_MB: f64 = 64.0;
/// Most CPU (utime + stime) of the relay process per event, in microseconds.
const CPU_TARGET_US: f64 = 5.0;

fn groups<'a, T, K: PartialEq + Copy>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<(K, Vec<&'a T>)> {
    let mut out: Vec<(K, Vec<&'a T>)> = Vec::new();
    for item in items {
        let k = key(item);
        match out.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(item),
            None => out.push((k, vec![item])),
        }
    }
    out
}

fn summary<T>(runs: &[&T], f: impl Fn(&T) -> Option<f64>) -> Option<Summary> {
    let values: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
    Summary::of(&values)
}

fn show(s: Option<Summary>, f: impl Fn(f64) -> String) -> String {
    s.map_or_else(|| "–".into(), |s| s.show_with(f))
}

fn mb(bytes: f64) -> String {
    format!("{:.0}", bytes / 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn tx_label(rows: u64, per_tx: u64) -> String {
    if per_tx >= rows {
        format!("one {}-row tx", thousands(rows as f64))
    } else {
        format!("{per_tx} row{}/tx", if per_tx == 1 { "" } else { "s" })
    }
}

/// The throughput table (markdown).
pub fn throughput_table(results: &[ThroughputResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| transactions | rows | runs | pg_recvlogical rows/s | outboxd events/s | outboxd MB/s | ratio to ceiling | \
         outboxd start-up s | outboxd peak RSS MB | outboxd CPU µs/event | targets |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for ((rows, per_tx), runs) in groups(results, |r| (r.rows, r.per_tx)) {
        let ratio = summary(&runs, ThroughputResult::ratio);
        let rss = summary(&runs, |r| r.relay.as_ref().map(|x| x.peak_rss as f64));
        let cpu = summary(&runs, |r| per_million(r.relay.as_ref()?.cpu_secs, r.rows));
        let mut targets = Vec::new();
        if let (Some((_, want)), Some(r)) = (RATIO_TARGETS.iter().find(|(k, _)| *k == per_tx), ratio) {
            targets.push(format!("ratio ≥ {want:.2}: {}", verdict(r.median >= *want)));
        }
        if let Some(r) = rss {
            let ok = r.max <= RSS_TARGET_MB * 1e6;
            targets.push(format!("RSS ≤ {RSS_TARGET_MB} MB: {}", verdict(ok)));
        }
        if let Some(c) = cpu {
            let ok = c.median <= CPU_TARGET_US;
            targets.push(format!("CPU ≤ {CPU_TARGET_US} µs/event: {}", verdict(ok)));
        }
        let dups: u64 = runs
            .iter()
            .filter_map(|r| r.relay.as_ref().map(|x| x.duplicates))
            .sum();
        if dups > 0 {
            targets.push(format!("{dups} DUPLICATES"));
        }
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            tx_label(rows, per_tx),
            thousands(rows as f64),
            runs.len(),
            show(summary(&runs, |r| Some(r.ceiling_rate())), thousands),
            show(summary(&runs, ThroughputResult::relay_rate), thousands),
            show(summary(&runs, ThroughputResult::relay_mb_per_s), |x| format!(
                "{x:.1}"
            )),
            show(ratio, |x| format!("{x:.2}")),
            show(
                summary(&runs, |r| r.relay.as_ref().map(|x| x.first_event_secs)),
                |x| format!("{x:.2}")
            ),
            show(rss, mb),
            show(cpu, |x| format!("{x:.1}")),
            if targets.is_empty() {
                "–".into()
            } else {
                targets.join("; ")
            },
        );
    }
    t
}

/// Per-1,000,000-event CPU seconds of a run's figure.
fn per_million(cpu_secs: Option<f64>, rows: u64) -> Option<f64> {
    cpu_secs.map(|c| c / rows as f64 * 1e6)
}

/// The side-by-side table (issue 12): per case, the ceiling, outboxd and every peer variant, same runs.
pub fn side_by_side_table(results: &[ThroughputResult]) -> String {
    let secs = |x: f64| format!("{x:.2}");
    let cpu = |x: f64| format!("{x:.1}");
    let mut t = String::new();
    let mut failures = Vec::new();
    let _ = writeln!(
        t,
        "| transactions | relay | runs | events/s | ratio to ceiling | start-up s | duplicates / missing | \
         peak RSS MB | relay CPU s per 1M events | walsender CPU s per 1M events |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((rows, per_tx), runs) in groups(results, |r| (r.rows, r.per_tx)) {
        let case = tx_label(rows, per_tx);
        let _ = writeln!(
            t,
            "| {case} | ceiling: the faster of pg_recvlogical ({} rows/s) and a raw client ({} rows/s), per run | {} | {} rows/s | 1.00 | – | – | – | – | – |",
            show(summary(&runs, |r| Some(r.rows as f64 / r.recvlogical_secs)), thousands),
            show(summary(&runs, |r| Some(r.rows as f64 / r.raw_client_secs)), thousands),
            runs.len(),
            show(summary(&runs, |r| Some(r.ceiling_rate())), thousands),
        );
        let relayed: Vec<&ThroughputResult> = runs.iter().copied().filter(|r| r.relay.is_some()).collect();
        if !relayed.is_empty() {
            let field =
                |f: &dyn Fn(&RelayResult) -> Option<f64>| summary(&relayed, |r| r.relay.as_ref().and_then(f));
            let dups: u64 = relayed
                .iter()
                .filter_map(|r| r.relay.as_ref().map(|x| x.duplicates))
                .sum();
            let _ = writeln!(
                t,
                "| {case} | outboxd | {} | {} | {} | {} | {dups} / 0 | {} | {} | {} |",
                relayed.len(),
                show(summary(&relayed, ThroughputResult::relay_rate), thousands),
                show(summary(&relayed, ThroughputResult::ratio), secs),
                show(field(&|x| Some(x.first_event_secs)), secs),
                show(field(&|x| Some(x.peak_rss as f64)), mb),
                show(field(&|x| per_million(x.cpu_secs, rows)), cpu),
                show(field(&|x| per_million(x.walsender_cpu_secs, rows)), cpu),
            );
        }
        let mut labels: Vec<&str> = Vec::new();
        for r in &runs {
            for p in &r.peers {
                if !labels.contains(&p.label.as_str()) {
                    labels.push(&p.label);
                }
            }
        }
        for label in labels {
            let peer_runs: Vec<(&ThroughputResult, &PeerResult)> = runs
                .iter()
                .flat_map(move |r| {
                    r.peers
                        .iter()
                        .filter(move |p| p.label == label)
                        .map(move |p| (*r, p))
                })
                .collect();
            let ok: Vec<(&ThroughputResult, &PeerResult)> = peer_runs
                .iter()
                .copied()
                .filter(|(_, p)| p.error.is_none() && p.secs.is_some())
                .collect();
            for (_, p) in peer_runs.iter().filter(|(_, p)| p.error.is_some()) {
                failures.push(format!(
                    "{case}, {label}: {}",
                    p.error
                        .as_deref()
                        .map_or(String::new(), |e| e.chars().take(400).collect())
                ));
            }
            let of = |f: &dyn Fn(&ThroughputResult, &PeerResult) -> Option<f64>| {
                Summary::of(&ok.iter().filter_map(|&(r, p)| f(r, p)).collect::<Vec<_>>())
            };
            let dups: u64 = peer_runs.iter().map(|(_, p)| p.duplicates).sum();
            let missing: u64 = peer_runs.iter().map(|(_, p)| p.missing).sum();
            let _ = writeln!(
                t,
                "| {case} | {label} | {} | {} | {} | {} | {dups} / {missing} | {} | {} | {} |",
                if ok.len() == peer_runs.len() {
                    ok.len().to_string()
                } else {
                    format!("{} ({} FAILED)", ok.len(), peer_runs.len() - ok.len())
                },
                show(of(&|r, p| p.secs.map(|s| r.rows as f64 / s)), thousands),
                show(of(&|r, p| p.secs.map(|s| r.ceiling_secs / s)), secs),
                show(of(&|_, p| p.first_event_secs), secs),
                show(of(&|_, p| p.peak_rss.map(|b| b as f64)), mb),
                show(of(&|r, p| per_million(p.cpu_secs, r.rows)), cpu),
                show(of(&|r, p| per_million(p.walsender_cpu_secs, r.rows)), cpu),
            );
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(t, "\nFailed peer runs:\n");
        for f in failures {
            let _ = writeln!(t, "- {}", f.replace('\n', " "));
        }
    }
    t
}

/// Details of the data: sizes, WAL, pre-writing time.
pub fn data_table(results: &[ThroughputResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| transactions | payload bytes/row (JSON) | Avro record bytes/row | WAL bytes/row | ceiling WAL MB/s | \
         pre-writing s |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|");
    for ((rows, per_tx), runs) in groups(results, |r| (r.rows, r.per_tx)) {
        let n = rows as f64;
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} |",
            tx_label(rows, per_tx),
            show(summary(&runs, |r| Some(r.payload_bytes as f64 / n)), |x| format!(
                "{x:.0}"
            )),
            show(
                summary(&runs, |r| r.relay.as_ref().map(|x| x.value_bytes as f64 / n)),
                |x| format!("{x:.0}")
            ),
            show(summary(&runs, |r| Some(r.wal_bytes as f64 / n)), |x| format!(
                "{x:.0}"
            )),
            show(
                summary(&runs, |r| Some(r.wal_bytes as f64 / r.ceiling_secs / 1e6)),
                |x| format!("{x:.1}")
            ),
            show(summary(&runs, |r| Some(r.prewrite_secs)), |x| format!("{x:.1}")),
        );
    }
    t
}

/// The latency table (markdown).
pub fn latency_table(results: &[LatencyResult]) -> String {
    let ms = |x: f64| format!("{:.1}", x / 1000.0);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| target events/s | rows/tx | relay | runs | achieved events/s | p50 ms | p95 ms | p99 ms | max ms | \
         peak RSS MB | targets |"
    );
    let _ = writeln!(t, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for ((rate, per_tx, relay), runs) in groups(results, |r| (r.rate, r.per_tx, r.relay.as_str())) {
        let p99 = summary(&runs, |r| Some(r.p99_us as f64));
        let mut targets = Vec::new();
        if let (true, true, Some(p)) = (rate >= 10_000, relay == "outboxd", p99) {
            targets.push(format!(
                "p99 ≤ {} ms: {}",
                P99_TARGET_US / 1000,
                verdict(p.median <= P99_TARGET_US as f64)
            ));
        }
        let dups: u64 = runs.iter().map(|r| r.duplicates).sum();
        if dups > 0 {
            targets.push(format!("{dups} DUPLICATES"));
        }
        let _ = writeln!(
            t,
            "| {} | {per_tx} | {relay} | {} | {} | {} | {} | {} | {} | {} | {} |",
            thousands(rate as f64),
            runs.len(),
            show(summary(&runs, |r| Some(r.achieved_rate)), thousands),
            show(summary(&runs, |r| Some(r.p50_us as f64)), ms),
            show(summary(&runs, |r| Some(r.p95_us as f64)), ms),
            show(p99, ms),
            show(summary(&runs, |r| Some(r.max_us as f64)), ms),
            show(summary(&runs, |r| Some(r.peak_rss as f64)), mb),
            if targets.is_empty() {
                "–".into()
            } else {
                targets.join("; ")
            },
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debezium::{Mode, Settings, Variant};

    fn run(per_tx: u64, ceiling_secs: f64, relay_secs: f64) -> ThroughputResult {
        ThroughputResult {
            rows: 1000,
            per_tx,
            prewrite_secs: 1.0,
            payload_bytes: 300_000,
            wal_bytes: 600_000,
            ceiling_secs,
            recvlogical_secs: ceiling_secs,
            raw_client_secs: ceiling_secs * 2.0,
            relay: Some(RelayResult {
                secs: relay_secs,
                first_event_secs: 0.5,
                peak_rss: 40_000_000,
                value_bytes: 200_000,
                duplicates: 0,
                cpu_secs: Some(1.5),
                walsender_cpu_secs: Some(0.5),
            }),
            peers: Vec::new(),
        }
    }

    #[test]
    fn side_by_side_has_the_ceiling_outboxd_and_each_peer() {
        let peer = |secs: Option<f64>, error: Option<&str>| PeerResult {
            variant: Variant {
                mode: Mode::ExactlyOnce,
                settings: Settings::Defaults,
            },
            label: "Debezium exactly-once".into(),
            secs,
            first_event_secs: secs.map(|_| 4.0),
            distinct: if secs.is_some() { 1000 } else { 10 },
            duplicates: 0,
            missing: if secs.is_some() { 0 } else { 990 },
            peak_rss: Some(400_000_000),
            cpu_secs: Some(6.0),
            walsender_cpu_secs: Some(0.4),
            value_bytes: 300_000,
            error: error.map(String::from),
            written: None,
            visible_us: Vec::new(),
        };
        let mut a = run(100, 1.0, 2.0);
        a.peers = vec![peer(Some(10.0), None)];
        let mut b = run(100, 1.0, 2.0);
        b.peers = vec![peer(None, Some("the connector failed"))];
        let t = side_by_side_table(&[a, b]);
        assert!(
            t.contains(
                "| 100 rows/tx | ceiling: the faster of pg_recvlogical (1,000 rows/s) and a raw client \
                 (500 rows/s), per run | 2 | 1,000 rows/s |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| 100 rows/tx | outboxd | 2 | 500 | 0.50 | 0.50 | 0 / 0 | 40 | 1500.0 | 500.0 |"),
            "{t}"
        );
        assert!(
            t.contains("| 100 rows/tx | Debezium exactly-once | 1 (1 FAILED) | 100 | 0.10 | 4.00 | 0 / 990 | 400 | 6000.0 | 400.0 |"),
            "{t}"
        );
        assert!(
            t.contains("- 100 rows/tx, Debezium exactly-once: the connector failed"),
            "{t}"
        );
    }

    #[test]
    fn throughput_rows_group_runs_and_check_targets() {
        let t = throughput_table(&[run(100, 1.0, 2.0), run(100, 1.0, 1.25), run(1, 1.0, 1.0)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        // 100-row: ratios 0.5 and 0.8, median 0.65 < 0.70.
        assert!(
            lines[2].starts_with("| 100 rows/tx | 1,000 | 2 | 1,000 |"),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].contains("0.65 (0.50–0.80)") && lines[2].contains("ratio ≥ 0.70: MISSED"),
            "{t}"
        );
        assert!(
            lines[3].contains("ratio ≥ 0.80: met") && lines[3].contains("RSS ≤ 64 MB: met"),
            "{t}"
        );
        // 1.5 CPU seconds for 1,000 rows: 1,500 µs per event.
        assert!(
            lines[3].contains("| 1500.0 |") && lines[3].contains("CPU ≤ 5 µs/event: MISSED"),
            "{t}"
        );
        assert!(data_table(&[run(1000, 1.0, 1.0)]).contains("| one 1,000-row tx | 300 | 200 | 600 | 0.6 |"));
    }

    #[test]
    fn latency_rows_check_the_p99_target_at_10k() {
        let r = |rate, p99_us| LatencyResult {
            relay: "outboxd".into(),
            rate,
            per_tx: 10,
            events: 100,
            achieved_rate: rate as f64,
            p50_us: 1000,
            p95_us: 2000,
            p99_us,
            max_us: 90_000,
            peak_rss: 30_000_000,
            duplicates: 0,
        };
        let t = latency_table(&[r(1000, 80_000), r(10_000, 20_000)]);
        assert!(t.lines().nth(2).unwrap().ends_with("| – |"), "{t}");
        assert!(t.contains("p99 ≤ 25 ms: met"), "{t}");
        let t = latency_table(&[r(10_000, 30_000)]);
        assert!(t.contains("p99 ≤ 25 ms: MISSED"), "{t}");
        // A peer gets its own row, named, and outboxd's target is not checked on it.
        let mut peer = r(10_000, 60_000);
        peer.relay = "Debezium at-least-once".into();
        let t = latency_table(&[r(10_000, 40_000), peer]);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(
            t.lines().nth(3).unwrap().contains("| Debezium at-least-once |"),
            "{t}"
        );
        assert!(t.lines().nth(3).unwrap().ends_with("| – |"), "{t}");
    }
}
