//! One latency run: outboxd streams a fresh database while writers commit at a steady rate; every event's
//! latency is the time from its Postgres commit (the `commit_time` header) to its visibility to the
//! `read_committed` consumer. A warm-up event (index 0) is awaited before writing starts and not counted.
//!
//! A peer (Debezium) runs the same case on a fresh database of its own, alone; its records do not carry the
//! commit time, so the consumer notes when each event became visible and the latency is taken from the row's
//! `pg_xact_commit_timestamp`, the same commit timestamp outboxd's `commit_time` header carries.

use crate::consumer::ConsumerSpec;
use crate::context::{wait_consumed, Bench, RunTarget};
use crate::debezium::{PeerRun, Peers, Variant, Workload};
use crate::env::run_name;
use crate::kafka;
use crate::pg::{connect, BenchDb, INSERT_RANGE_SQL, PUBLICATION};
use crate::relay::RunTopics;
use crate::stats::percentile;
use crate::writer::{self, WriterSpec, WriterTally};
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What is measured.
#[derive(Clone, Copy, Debug)]
pub struct LatencyCase {
    /// Target events per second.
    pub rate: u64,
    /// Rows per transaction.
    pub per_tx: u64,
    /// How long the writers write.
    pub duration: Duration,
}

/// The figures of one run (latencies in microseconds).
#[derive(Clone, Debug, Serialize)]
pub struct LatencyResult {
    /// `outboxd` or the peer's label.
    pub relay: String,
    /// Target events per second.
    pub rate: u64,
    /// Rows per transaction.
    pub per_tx: u64,
    /// Events written (and seen).
    pub events: u64,
    /// Events per second actually written.
    pub achieved_rate: f64,
    /// Median latency.
    pub p50_us: i64,
    /// 95th percentile.
    pub p95_us: i64,
    /// 99th percentile.
    pub p99_us: i64,
    /// Largest.
    pub max_us: i64,
    /// The relay's peak RSS in bytes.
    pub peak_rss: u64,
    /// Events seen twice (exactly-once: 0).
    pub duplicates: u64,
}

impl LatencyResult {
    /// Percentiles of `lat` (sorted here) and the rest of the figures.
    fn of(
        relay: String,
        case: LatencyCase,
        w: WriterTally,
        mut lat: Vec<i64>,
        peak_rss: u64,
        duplicates: u64,
    ) -> Self {
        lat.sort_unstable();
        let p = |q| percentile(&lat, q).unwrap_or(0);
        LatencyResult {
            relay,
            rate: case.rate,
            per_tx: case.per_tx,
            events: w.events,
            achieved_rate: w.events as f64 / w.elapsed.as_secs_f64(),
            p50_us: p(50.0),
            p95_us: p(95.0),
            p99_us: p(99.0),
            max_us: lat.last().copied().unwrap_or(0),
            peak_rss,
            duplicates,
        }
    }
}

/// Runs one case once.
pub async fn run(bench: &Bench, case: LatencyCase) -> Result<LatencyResult> {
    let name = run_name();
    let db = BenchDb::create(&bench.services, &name).await?;
    let topics = RunTopics::for_run(&name);
    let result = run_in(bench, &db, &topics, case).await;
    let dropped = db.drop_all().await;
    if let Err(e) = kafka::delete_topics(&bench.services.kafka_bootstrap, &topics.all()).await {
        eprintln!("bench: deleting the topics of {name}: {e:#}");
    }
    let result = result.with_context(|| format!("run {name}"))?;
    dropped.with_context(|| format!("dropping database {name} and its slots"))?;
    Ok(result)
}

async fn run_in(bench: &Bench, db: &BenchDb, topics: &RunTopics, case: LatencyCase) -> Result<LatencyResult> {
    let slot = format!("{}_relay", db.name);
    db.create_slot(&slot).await?;
    let target = RunTarget {
        name: &db.name,
        db_url: &db.url,
        slot: &slot,
        publication: PUBLICATION,
        topics,
    };
    let deadline = Instant::now() + case.duration * 2 + Duration::from_secs(90);
    let spec = ConsumerSpec {
        bootstrap: bench.services.kafka_bootstrap.clone(),
        topic: topics.events.clone(),
        deadline,
        latency_from: Some(1),
        record_visible: false,
    };
    let writers = WriterSpec {
        db_url: db.url.clone(),
        rate: case.rate,
        per_tx: case.per_tx,
        duration: case.duration,
        writers: bench.sessions,
        first: 1,
    };
    let db_url = db.url.clone();
    let mut written = None;
    let written_ref = &mut written;
    let drained = bench
        .drain(&target, spec, None, None, |consumer, mut relay| async move {
            let outcome = async {
                // Warm-up: outboxd is streaming once event 0 is visible.
                let client = connect(&db_url).await?;
                client.execute(INSERT_RANGE_SQL, &[&0i64, &0i64]).await?;
                wait_consumed(&consumer, &mut relay, 1, Instant::now() + Duration::from_secs(60))
                    .await
                    .context("waiting for the warm-up event")?;
                let w = writer::run(&writers).await?;
                consumer.expect(1 + w.events);
                *written_ref = Some(w);
                wait_consumed(&consumer, &mut relay, 1 + w.events, deadline).await
            }
            .await;
            (consumer, relay, outcome)
        })
        .await?;
    let w = written.context("no writer result")?;
    let lat = drained.consumed.latencies_us;
    ensure!(
        lat.len() as u64 == w.events,
        "{} latencies for {} events",
        lat.len(),
        w.events
    );
    Ok(LatencyResult::of(
        "outboxd".into(),
        case,
        w,
        lat,
        drained.peak_rss,
        drained.consumed.duplicates,
    ))
}

/// Runs one case once for one peer variant, on a database of its own.
pub async fn run_peer(
    bench: &Bench,
    peers: &Peers,
    variant: Variant,
    case: LatencyCase,
) -> Result<LatencyResult> {
    let name = run_name();
    let db = BenchDb::create(&bench.services, &name).await?;
    let result = run_peer_in(bench, peers, variant, &db, case).await;
    let dropped = db.drop_all().await;
    let result = result.with_context(|| format!("run {name}, {}", variant.label()))?;
    dropped.with_context(|| format!("dropping database {name} and its slots"))?;
    Ok(result)
}

async fn run_peer_in(
    bench: &Bench,
    peers: &Peers,
    variant: Variant,
    db: &BenchDb,
    case: LatencyCase,
) -> Result<LatencyResult> {
    let slot = format!("{}_{}", db.name, variant.tag());
    db.create_slot(&slot).await?;
    let writers = WriterSpec {
        db_url: db.url.clone(),
        rate: case.rate,
        per_tx: case.per_tx,
        duration: case.duration,
        writers: bench.sessions,
        first: 1,
    };
    let run_dir = bench.work_dir.join(&db.name);
    let r = PeerRun {
        services: &bench.services,
        peers,
        variant,
        db,
        slot: &slot,
        workload: Workload::Latency(writers),
        partitions: bench.partitions,
        run_dir: &run_dir,
        timeout: case.duration * 2 + Duration::from_secs(180),
    }
    .run()
    .await;
    if let Some(e) = &r.error {
        bail!("{e}");
    }
    let w = r.written.context("no writer result")?;
    ensure!(r.missing == 0, "{} events never became visible", r.missing);
    let commits = db.commit_times_us(1).await?;
    let lat = r
        .visible_us
        .iter()
        .map(|(i, seen)| {
            commits
                .get(i)
                .map(|c| seen - c)
                .with_context(|| format!("event {i} was seen but has no row"))
        })
        .collect::<Result<Vec<i64>>>()?;
    ensure!(
        lat.len() as u64 == w.events,
        "{} latencies for {} events",
        lat.len(),
        w.events
    );
    Ok(LatencyResult::of(
        r.label,
        case,
        w,
        lat,
        r.peak_rss.unwrap_or(0),
        r.duplicates,
    ))
}
