//! Pure summary of a system-wide profile (`perf script -F pid,tid,comm,ip,sym,dso` lines): CPU by process,
//! outboxd's CPU by thread, and outboxd's self time by kind of work (the stage a symbol belongs to).

use std::collections::BTreeMap;
use std::fmt::Write;

/// Processes the summary names by pid.
#[derive(Clone, Debug, Default)]
pub struct KnownPids {
    /// outboxd (or the host running the pipeline).
    pub relay: u32,
    /// The bench itself (its consumer thread).
    pub bench: u32,
    /// The walsender serving outboxd's slot.
    pub walsender: Option<u32>,
}

/// Sample counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shares {
    /// Every sample.
    pub total: u64,
    /// (label, samples), largest first.
    pub processes: Vec<(String, u64)>,
    /// outboxd's threads by name, (name, samples), largest first.
    pub relay_threads: Vec<(String, u64)>,
    /// outboxd's samples by kind of work, largest first.
    pub relay_work: Vec<(&'static str, u64)>,
}

/// One sample: thread name, pid, symbol and shared object (empty when `perf script` printed none).
fn parse(line: &str) -> Option<(String, u32, &str, &str)> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let at = tokens.iter().position(|t| {
        t.split_once('/')
            .is_some_and(|(p, t)| p.parse::<u32>().is_ok() && t.parse::<u32>().is_ok())
    })?;
    let pid = tokens[at].split_once('/')?.0.parse().ok()?;
    let comm = tokens[..at].join(" ");
    // The rest is `<ip> <symbol> (<dso>)`.
    let ip_end = line.find(tokens[at])? + tokens[at].len();
    let rest = line[ip_end..].trim_start();
    let rest = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r.trim());
    let (sym, dso) = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => (&rest[..i], &rest[i + 2..rest.len() - 1]),
        _ => (rest, ""),
    };
    Some((comm, pid, sym, dso))
}

/// The kind of work a symbol does, for outboxd's own samples (first rule that matches).
pub fn kind_of_work(sym: &str, dso: &str) -> &'static str {
    let has = |needles: &[&str]| needles.iter().any(|n| sym.contains(n));
    if dso.contains("kernel") {
        "kernel: syscalls, thread wake-ups and switches"
    } else if has(&[
        "malloc",
        "free",
        "_int_",
        "realloc",
        "unlink_chunk",
        "__rust_alloc",
        "__rust_dealloc",
        "__rdl_",
    ]) {
        "memory allocation (malloc/free)"
    } else if sym.starts_with("rd_") || has(&["rdkafka", "rd_kafka"]) {
        "Kafka client (librdkafka: batching, protocol)"
    } else if has(&["serde_json"]) {
        "JSON parsing (serde_json)"
    } else if has(&["outboxd_avro", "apache_avro", "num_bigint"]) {
        "Avro validation and encoding"
    } else if has(&["hash", "Hasher", "btree", "BTree"]) {
        "hash maps and B-trees (JSON objects, lookups)"
    } else if has(&[
        "outboxd_wal",
        "pgwire",
        "pgoutput",
        "tokio_postgres",
        "postgres_protocol",
    ]) {
        "WAL decoding (pgoutput, row mapping)"
    } else if has(&["outboxd_kafka"]) {
        "Kafka sink (routing, headers, batching)"
    } else if has(&["outboxd::", "outboxd_core"]) {
        "pipeline (event handling)"
    } else if has(&["tokio"]) {
        "tokio runtime (tasks, channels, timers)"
    } else if has(&["memmove", "memcpy", "memcmp", "memset", "strlen", "memchr"]) {
        "memory copies and compares"
    } else if has(&["fmt", "Display", "to_string"]) {
        "formatting (headers, numbers)"
    } else if dso.contains("vdso") {
        "clock reads (vdso)"
    } else if has(&["pthread", "futex", "cnd_", "mtx_"]) {
        "locks and condition variables"
    } else {
        "other"
    }
}

fn sorted<K: Ord>(m: BTreeMap<K, u64>) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Aggregates the samples. Processes other than the known ones are named by `name_of(pid)` (e.g. their
/// /proc comm); pid 0 is idle.
pub fn shares(script: &str, pids: &KnownPids, name_of: impl Fn(u32) -> String) -> Shares {
    let mut processes: BTreeMap<String, u64> = BTreeMap::new();
    let mut threads: BTreeMap<String, u64> = BTreeMap::new();
    let mut work: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut total = 0;
    for (comm, pid, sym, dso) in script.lines().filter_map(parse) {
        total += 1;
        let label = if pid == 0 {
            "idle".to_string()
        } else if pid == pids.relay {
            *threads.entry(comm).or_default() += 1;
            *work.entry(kind_of_work(sym, dso)).or_default() += 1;
            "outboxd".to_string()
        } else if pid == pids.bench {
            "bench (read_committed consumer)".to_string()
        } else if Some(pid) == pids.walsender {
            "postgres walsender (outboxd's slot)".to_string()
        } else {
            name_of(pid)
        };
        *processes.entry(label).or_default() += 1;
    }
    Shares {
        total,
        processes: sorted(processes),
        relay_threads: sorted(threads),
        relay_work: sorted(work),
    }
}

impl Shares {
    /// Three markdown tables, as shares of one core (2 CPUs fully busy = 200%): by process, outboxd by
    /// thread, outboxd by kind of work. Rows under 1% are merged.
    pub fn markdown(&self, cpus: usize) -> String {
        let pct = |n: u64| 100.0 * cpus as f64 * n as f64 / self.total.max(1) as f64;
        let mut t = String::new();
        let mut table = |title: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(t, "| {title} | CPU (100% = one core) |\n|---|---:|");
            let (big, small): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, n)| pct(*n) >= 1.0);
            for (name, n) in big {
                let _ = writeln!(t, "| {name} | {:.0}% |", pct(n));
            }
            if !small.is_empty() {
                let n: u64 = small.iter().map(|(_, n)| n).sum();
                let _ = writeln!(t, "| {} others, under 1% each | {:.0}% |", small.len(), pct(n));
            }
            t.push('\n');
        };
        table("process", self.processes.clone());
        table("outboxd thread", self.relay_threads.clone());
        table(
            "outboxd, by kind of work (self time)",
            self.relay_work.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "         swapper     0/0     ffffffff8220 default_idle ([kernel.kallsyms])\n\
        outboxd   10/10   55d0 outboxd_avro::convert::Converter::value (/work/target/release/outboxd)\n\
        tokio-rt-worker   10/11   7f01 _int_malloc (/usr/lib/x86_64-linux-gnu/libc.so.6)\n\
        tokio-rt-worker   10/12   ffff finish_task_switch.isra.0 ([kernel.kallsyms])\n\
        producer pollin   10/13   7f02 rd_kafka_q_pop_serve (/work/target/release/outboxd)\n\
        postgres   20/20   5501 ReorderBufferCommit (/usr/lib/postgresql/15/bin/postgres)\n\
        bench-consumer   30/31   5502 rd_kafka_consume (/work/target/release/outboxd-bench)\n\
        tokio-rt-worker   40/41   5503 tokio::runtime::park ([unknown])\n\
        garbage\n";

    #[test]
    fn parses_perf_script_lines() {
        let (comm, pid, sym, dso) =
            parse("producer pollin   10/13   7f02 rd_kafka_q_pop (/x/outboxd)").unwrap();
        assert_eq!(
            (comm.as_str(), pid, sym, dso),
            ("producer pollin", 10, "rd_kafka_q_pop", "/x/outboxd")
        );
        let (_, pid, sym, dso) = parse("         swapper     0/0     ").unwrap();
        assert_eq!((pid, sym, dso), (0, "", ""));
        assert!(parse("garbage").is_none());
    }

    #[test]
    fn shares_by_process_thread_and_work() {
        let pids = KnownPids {
            relay: 10,
            bench: 30,
            walsender: Some(20),
        };
        let s = shares(SCRIPT, &pids, |p| format!("pid{p}"));
        assert_eq!(s.total, 8);
        assert_eq!(s.processes[0], ("outboxd".to_string(), 4));
        assert!(s.processes.contains(&("idle".to_string(), 1)));
        assert!(s
            .processes
            .contains(&("postgres walsender (outboxd's slot)".to_string(), 1)));
        assert!(s.processes.contains(&("pid40".to_string(), 1)));
        assert_eq!(s.relay_threads[0], ("tokio-rt-worker".to_string(), 2));
        assert_eq!(s.relay_work.len(), 4, "{:?}", s.relay_work);
        assert!(s.relay_work.contains(&("Avro validation and encoding", 1)));
        assert!(s.relay_work.contains(&("memory allocation (malloc/free)", 1)));
        let md = s.markdown(2);
        assert!(md.contains("| outboxd | 100% |"), "{md}");
        assert!(md.contains("| tokio-rt-worker | 50% |"), "{md}");
        assert!(
            md.contains("| Kafka client (librdkafka: batching, protocol) | 25% |"),
            "{md}"
        );
        let many = format!("{}other 50/50 1 x (y)\n", SCRIPT.repeat(200));
        let md = shares(&many, &pids, |p| format!("pid{p}")).markdown(2);
        assert!(md.contains("| 1 others, under 1% each | 0% |"), "{md}");
    }

    #[test]
    fn kinds_of_work() {
        assert_eq!(
            kind_of_work("serde_json::de::from_str", "/x"),
            "JSON parsing (serde_json)"
        );
        assert_eq!(
            kind_of_work("outboxd_wal::pgoutput::tuple", "/x"),
            "WAL decoding (pgoutput, row mapping)"
        );
        assert_eq!(
            kind_of_work("anything", "[kernel.kallsyms]"),
            "kernel: syscalls, thread wake-ups and switches"
        );
        assert_eq!(
            kind_of_work("__vdso_clock_gettime", "[vdso]"),
            "clock reads (vdso)"
        );
        assert_eq!(kind_of_work("mystery", "/x"), "other");
    }
}
