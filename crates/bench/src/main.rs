//! outboxd's benchmarks (issue 7), run through `scripts/bench`: end-to-end throughput against the ceiling of
//! logical decoding (`pg_recvlogical` on identical WAL, same run), commit-to-visible latency at a steady
//! write rate, and outboxd's peak RSS, including one transaction as large as the whole data set.
//!
//! ```text
//!  fresh db ── two slots at one LSN ── pre-write N rows (k per tx) ──┬─ pg_recvlogical --endpos ──▶ ceiling
//!                                                                    └─ outboxd run ──▶ Kafka ──▶ read_committed
//!                                                                                                 consumer: last
//!  writers at R events/s ── outboxd run ──▶ Kafka ──▶ consumer: now − commit_time header           event seen
//! ```
//!
//! Every figure is the median of the runs with min and max; every run uses its own database, slots, topics
//! and transactional id, and drops them afterwards.

mod ceiling;
mod consumer;
mod context;
mod debezium;
mod env;
mod host;
mod kafka;
mod latency;
mod perfsum;
mod pg;
mod procstat;
mod profile;
mod raw_ceiling;
mod relay;
mod report;
mod stats;
mod throughput;
mod timefmt;
mod writer;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use context::Bench;
use latency::LatencyCase;
use relay::RelayCommand;
use std::path::PathBuf;
use std::time::Duration;
use throughput::ThroughputCase;

/// The benchmarks of outboxd (see docs/benchmarks.md). Needs the local services (`scripts/services up`).
#[derive(Debug, Parser)]
#[command(name = "outboxd-bench")]
struct Args {
    /// Small and fast (20,000 rows, one run of each case, 5 s of latency, one Debezium run in the first
    /// throughput case): checks that the bench and its peer harness still work.
    #[arg(long)]
    quick: bool,
    /// Rows per throughput run [default: 1,000,000; quick: 20,000].
    #[arg(long)]
    rows: Option<u64>,
    /// Runs of every case [default: 3; quick: 1].
    #[arg(long)]
    runs: Option<usize>,
    /// Rows per transaction of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    tx_sizes: Vec<u64>,
    /// Also run one transaction of all the rows (the memory case).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    big_tx: bool,
    /// Latency cases as RATE:ROWS_PER_TX (events per second, rows per transaction).
    #[arg(long, value_delimiter = ',', default_value = "1000:1,10000:10")]
    latency: Vec<String>,
    /// Seconds of steady writing per latency run [default: 30; quick: 5].
    #[arg(long)]
    latency_secs: Option<u64>,
    /// Which scenarios to run (`none`: only the profiled run of `--profile`).
    #[arg(long, value_delimiter = ',', default_value = "throughput,latency")]
    scenarios: Vec<Scenario>,
    /// Measure the ceiling only (no outboxd): pre-writing and pg_recvlogical.
    #[arg(long)]
    ceiling_only: bool,
    /// The outboxd binary [default: <repo>/target/release/outboxd].
    #[arg(long)]
    outboxd: Option<PathBuf>,
    /// How outboxd runs: `binary` (`outboxd run --config`), `host` (the library pipeline in a child process
    /// of the bench), `auto` (the binary when it has `run`).
    #[arg(long, value_enum, default_value = "auto")]
    relay: RelayKind,
    /// Extra outboxd settings as KEY=VALUE over the generated config, e.g. `kafka.batch.linger_ms=1000`
    /// (repeatable; works for both relays).
    #[arg(long = "relay-set")]
    relay_set: Vec<String>,
    /// Internal: run the library pipeline with this config until SIGTERM (the `host` relay).
    #[arg(long, hide = true)]
    relay_host: Option<PathBuf>,
    /// The repository root (schemas in config/schemas, files in .local/bench).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// After the measured runs, one more 100-row-transaction run under `perf record -a`, files in this dir.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Where to write every run's figures as JSON [default: <repo>/.local/bench/results-<time>.json].
    #[arg(long)]
    json: Option<PathBuf>,
    /// Parallel sessions for pre-writing and for the latency writers.
    #[arg(long, default_value_t = 2)]
    sessions: u64,
    /// Partitions of the event topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Relays measured side by side with outboxd, each alone after outboxd: in the throughput runs on a slot
    /// created with outboxd's, in the latency runs on a database of their own [default: `debezium`; with
    /// `--ceiling-only`: `none`; with `--quick`, one at-least-once run in the first throughput case only].
    /// Debezium must be installed (tools/debezium/install; scripts/bench does it).
    #[arg(long, value_delimiter = ',')]
    peers: Option<Vec<debezium::Peer>>,
    /// Debezium's delivery modes to run (with `--peers debezium`).
    /// [default: at-least-once,exactly-once; quick: at-least-once]
    #[arg(long, value_delimiter = ',')]
    debezium_modes: Option<Vec<debezium::Mode>>,
    /// Debezium settings to run each mode with: `defaults`, and/or `tuned` (the throughput settings of
    /// Debezium's docs: max.batch.size, max.queue.size, producer batching; listed in the report).
    /// [default: defaults,tuned; quick: defaults]
    #[arg(long, value_delimiter = ',')]
    debezium_settings: Option<Vec<debezium::Settings>>,
    /// Debezium connector settings as KEY=VALUE over the generated ones, every variant (repeatable; listed in
    /// the report), e.g. `snapshot.mode=never`.
    #[arg(long = "debezium-set")]
    debezium_set: Vec<String>,
    /// Where Debezium and Kafka Connect are installed [default: <tools>/debezium-3.6.1.Final].
    #[arg(long, env = "OUTBOXD_DEBEZIUM_HOME")]
    debezium_home: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RelayKind {
    Auto,
    Binary,
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Throughput,
    Latency,
    None,
}

fn latency_cases(specs: &[String], secs: u64) -> Result<Vec<LatencyCase>> {
    specs
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (rate, per_tx) = s.split_once(':').unwrap_or((s, "1"));
            let (rate, per_tx): (u64, u64) = (rate.parse()?, per_tx.parse()?);
            if rate == 0 || per_tx == 0 {
                bail!("latency case {s:?}: rate and rows per transaction must be positive");
            }
            Ok(LatencyCase {
                rate,
                per_tx,
                duration: Duration::from_secs(secs),
            })
        })
        .collect()
}

/// nproc, CPU model and memory, for the report.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown", |m| m.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs ({model}), {:.1} GiB memory",
        mem_kb as f64 / 1024.0 / 1024.0
    )
}

/// The 1, 5 and 15 minute load averages: the machine may be shared, and the figures move with it.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(config) = &args.relay_host {
        return host::main(config);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench_main(args))
}

async fn bench_main(args: Args) -> Result<()> {
    let rows = args.rows.unwrap_or(if args.quick { 20_000 } else { 1_000_000 });
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let latency_secs = args.latency_secs.unwrap_or(if args.quick { 5 } else { 30 });
    let repo = args.repo.canonicalize().context("--repo")?;
    let bin = args
        .outboxd
        .clone()
        .unwrap_or_else(|| repo.join("target/release/outboxd"));
    let relay = match args.relay {
        _ if args.ceiling_only => None,
        RelayKind::Host => Some(RelayCommand::host()?),
        kind => {
            if !bin.exists() {
                bail!(
                    "{} does not exist: cargo build --release -p outboxd (or --ceiling-only)",
                    bin.display()
                );
            }
            Some(match kind {
                RelayKind::Binary => RelayCommand::binary(&bin),
                _ => RelayCommand::detect(&bin).await?,
            })
        }
    };
    let bench = Bench {
        services: env::Services::from_env()?,
        relay,
        schema_dir: repo.join("config/schemas"),
        work_dir: repo.join(".local/bench"),
        sessions: args.sessions,
        partitions: args.partitions,
        overrides: args.relay_set.clone(),
    };
    let wanted = args.peers.clone().unwrap_or_else(|| {
        if args.ceiling_only {
            Vec::new()
        } else {
            vec![debezium::Peer::Debezium]
        }
    });
    let modes = args.debezium_modes.clone().unwrap_or_else(|| {
        if args.quick {
            vec![debezium::Mode::AtLeastOnce]
        } else {
            vec![debezium::Mode::AtLeastOnce, debezium::Mode::ExactlyOnce]
        }
    });
    let settings = args.debezium_settings.clone().unwrap_or_else(|| {
        if args.quick {
            vec![debezium::Settings::Defaults]
        } else {
            vec![debezium::Settings::Defaults, debezium::Settings::Tuned]
        }
    });
    let peers = if wanted.contains(&debezium::Peer::Debezium) {
        Some(debezium::Peers::new(
            args.debezium_home.clone().unwrap_or_else(debezium::default_home),
            &repo,
            &modes,
            &settings,
            &args.debezium_set,
        )?)
    } else {
        None
    };
    let load_at_start = load_average();
    let left = pg::drop_leftovers(&bench.services).await?;
    if left > 0 {
        eprintln!("bench: dropped {left} database(s) left by an earlier bench, with their slots");
    }

    let mut cases: Vec<ThroughputCase> = args
        .tx_sizes
        .iter()
        .map(|&per_tx| ThroughputCase {
            rows,
            per_tx: per_tx.clamp(1, rows),
        })
        .collect();
    if args.big_tx {
        cases.push(ThroughputCase { rows, per_tx: rows });
    }
    let mut throughput_results = Vec::new();
    if args.scenarios.contains(&Scenario::Throughput) {
        for (i, case) in cases.iter().enumerate() {
            // --quick: one small peer run (the first case), so that the harness cannot rot.
            let case_peers = peers.as_ref().filter(|_| !args.quick || i == 0);
            for run in 1..=runs {
                let r = throughput::run(&bench, *case, None, case_peers).await?;
                eprintln!(
                    "bench: throughput {} rows/tx run {run}/{runs}: ceiling {:.0} rows/s (pg_recvlogical {:.0}, raw client {:.0}), outboxd {} ({:.1} s pre-writing)",
                    case.per_tx,
                    r.ceiling_rate(),
                    r.rows as f64 / r.recvlogical_secs,
                    r.rows as f64 / r.raw_client_secs,
                    r.relay_rate().map_or("not run".into(), |x| format!(
                        "{x:.0} events/s, ratio {:.2}, peak RSS {:.0} MB",
                        r.ratio().unwrap_or(0.0),
                        r.relay.as_ref().map_or(0.0, |x| x.peak_rss as f64 / 1e6)
                    )),
                    r.prewrite_secs
                );
                for p in &r.peers {
                    eprintln!(
                        "bench: throughput {} rows/tx run {run}/{runs}: {}: {}",
                        case.per_tx,
                        p.label,
                        match (&p.error, p.secs) {
                            (Some(e), _) =>
                                format!("FAILED ({} of {} events seen): {e}", p.distinct, case.rows),
                            (None, Some(secs)) => format!(
                                "{:.0} events/s, start-up {:.2} s, {} duplicates, peak RSS {:.0} MB",
                                case.rows as f64 / secs,
                                p.first_event_secs.unwrap_or(0.0),
                                p.duplicates,
                                p.peak_rss.unwrap_or(0) as f64 / 1e6
                            ),
                            (None, None) => "no figures".into(),
                        }
                    );
                }
                throughput_results.push(r);
            }
        }
    }
    let mut latency_results = Vec::new();
    let mut latency_failures = Vec::new();
    if args.scenarios.contains(&Scenario::Latency) && bench.relay.is_some() {
        let variants = match &peers {
            Some(p) if !args.quick => &p.variants[..],
            _ => &[][..],
        };
        for case in latency_cases(&args.latency, latency_secs)? {
            for run in 1..=runs {
                let mut rs = vec![latency::run(&bench, case).await?];
                for &v in variants {
                    let peers = peers.as_ref().context("variants without peers")?;
                    match latency::run_peer(&bench, peers, v, case).await {
                        Ok(r) => rs.push(r),
                        Err(e) => {
                            eprintln!(
                                "bench: latency {} events/s, {}: FAILED: {e:#}",
                                case.rate,
                                v.label()
                            );
                            latency_failures.push(format!(
                                "{} events/s ({} rows/tx), {}: {}",
                                case.rate,
                                case.per_tx,
                                v.label(),
                                format!("{e:#}").chars().take(400).collect::<String>()
                            ));
                        }
                    }
                }
                for r in rs {
                    eprintln!(
                        "bench: latency {} events/s ({} rows/tx) run {run}/{runs}, {}: achieved {:.0}/s, \
                         p50 {:.1} ms, p99 {:.1} ms",
                        case.rate,
                        case.per_tx,
                        r.relay,
                        r.achieved_rate,
                        r.p50_us as f64 / 1000.0,
                        r.p99_us as f64 / 1000.0
                    );
                    latency_results.push(r);
                }
            }
        }
    }
    let mut profiled = None;
    if let (Some(dir), true) = (&args.profile, bench.relay.is_some()) {
        let case = ThroughputCase {
            rows,
            per_tx: 100.min(rows),
        };
        let r = throughput::run(&bench, case, Some(dir), None).await?;
        eprintln!("bench: profiled run written to {}", dir.display());
        profiled = Some(r);
    }

    println!("## outboxd benchmarks\n");
    println!(
        "Machine: {}. Rows per throughput run: {}; runs per case: {runs}. Load average (1/5/15 min) at \
         the start: {load_at_start}; at the end: {}.\n",
        machine(),
        rows,
        load_average()
    );
    println!(
        "Ceiling: the faster, per run, of `{}` and {}\n",
        ceiling::CeilingRun::command_line(),
        raw_ceiling::RawCeilingRun::command_line()
    );
    if let Some(r) = &bench.relay {
        println!("outboxd: `{}`\n", r.describe());
        if !bench.overrides.is_empty() {
            println!(
                "outboxd settings changed from the defaults: `{}`\n",
                bench.overrides.join("`, `")
            );
        }
    }
    if let Some(p) = &peers {
        println!("{}\n", p.describe());
    }
    if throughput_results.iter().any(|r| !r.peers.is_empty()) {
        println!(
            "### Side by side (same rows, same slots' start, same broker, each relay alone; until the N-th \
             distinct event is visible to read_committed)\n"
        );
        println!("{}", report::side_by_side_table(&throughput_results));
    }
    if !throughput_results.is_empty() {
        println!(
            "### Throughput (time from outboxd's start until the last event is visible to read_committed)\n"
        );
        println!("{}", report::throughput_table(&throughput_results));
        println!("{}", report::data_table(&throughput_results));
    }
    if !latency_results.is_empty() {
        println!("### Latency (Postgres commit to read_committed visibility), {latency_secs} s per run\n");
        println!("{}", report::latency_table(&latency_results));
        if !latency_failures.is_empty() {
            println!("Failed peer latency runs:\n");
            for f in &latency_failures {
                println!("- {}", f.replace('\n', " "));
            }
            println!();
        }
    }
    if let (Some(p), Some(dir)) = (&profiled, &args.profile) {
        println!(
            "### CPU profile (one more 100-row-transaction run under `perf record -a`, not in the tables)\n"
        );
        println!("{}", report::throughput_table(std::slice::from_ref(p)));
        println!(
            "{}",
            std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default()
        );
    }
    let json_path = args.json.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        bench.work_dir.join(format!("results-{secs}.json"))
    });
    std::fs::create_dir_all(json_path.parent().unwrap_or(&bench.work_dir))?;
    let json = serde_json::json!({
        "machine": machine(),
        "load_average": { "start": load_at_start, "end": load_average() },
        "rows": rows,
        "runs": runs,
        "throughput": throughput_results,
        "latency": latency_results,
        "profiled": profiled,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)?;
    eprintln!("bench: every run's figures: {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_latency_cases() {
        let c = latency_cases(&["1000:1".into(), "10000:10".into(), "500".into()], 7).unwrap();
        assert_eq!(
            c.iter().map(|c| (c.rate, c.per_tx)).collect::<Vec<_>>(),
            [(1000, 1), (10_000, 10), (500, 1)]
        );
        assert_eq!(c[0].duration, Duration::from_secs(7));
        assert!(latency_cases(&["0:1".into()], 1).is_err());
        assert!(latency_cases(&["x:1".into()], 1).is_err());
        assert!(latency_cases(&[String::new()], 1).unwrap().is_empty());
    }
}
