//! One throughput run: a fresh database, two slots created at the same point BEFORE the rows are written
//! (one for the ceiling, one for outboxd, so both read identical WAL), N rows pre-written in transactions of
//! k rows, then the ceiling (`pg_recvlogical` up to the flushed end) and outboxd (spawn until the last event
//! is visible to a `read_committed` consumer). Everything the run made is dropped afterwards.

use crate::ceiling::CeilingRun;
use crate::consumer::ConsumerSpec;
use crate::context::{run_timeout, wait_consumed, Bench, RunTarget};
use crate::debezium::{self, PeerResult, Peers};
use crate::env::run_name;
use crate::kafka;
use crate::perfsum::KnownPids;
use crate::pg::{BenchDb, PUBLICATION};
use crate::procstat;
use crate::profile;
use crate::raw_ceiling::RawCeilingRun;
use crate::relay::RunTopics;
use anyhow::{ensure, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// What is measured.
#[derive(Clone, Copy, Debug)]
pub struct ThroughputCase {
    /// Rows written.
    pub rows: u64,
    /// Rows per transaction.
    pub per_tx: u64,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputResult {
    /// Rows written.
    pub rows: u64,
    /// Rows per transaction.
    pub per_tx: u64,
    /// Seconds spent pre-writing (not measured).
    pub prewrite_secs: f64,
    /// Bytes of the payloads as text.
    pub payload_bytes: u64,
    /// WAL bytes from the slots' start to the end position.
    pub wal_bytes: u64,
    /// The ceiling: the faster of `recvlogical_secs` and `raw_client_secs`.
    pub ceiling_secs: f64,
    /// pg_recvlogical: spawn to exit at `--endpos`.
    pub recvlogical_secs: f64,
    /// The minimal replication client (`raw_ceiling`) on its twin slot: connect to the end position.
    pub raw_client_secs: f64,
    /// outboxd's side, unless ceiling-only.
    pub relay: Option<RelayResult>,
    /// The peers' sides (`--peers`), each on its own slot created with the others.
    pub peers: Vec<PeerResult>,
}

/// outboxd's figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RelayResult {
    /// Spawn until the last event was visible to the `read_committed` consumer.
    pub secs: f64,
    /// Spawn until the first event was visible (start-up: registry, init_transactions, checkpoint read).
    pub first_event_secs: f64,
    /// Peak RSS (VmHWM) in bytes.
    pub peak_rss: u64,
    /// Bytes of the Kafka record values (framed Avro).
    pub value_bytes: u64,
    /// Events seen twice (exactly-once: 0).
    pub duplicates: u64,
    /// CPU seconds (utime + stime) of outboxd, start-up included, read just before it was stopped.
    pub cpu_secs: Option<f64>,
    /// CPU seconds of the walsender serving outboxd's slot.
    pub walsender_cpu_secs: Option<f64>,
}

impl ThroughputResult {
    /// Rows per second of the ceiling.
    pub fn ceiling_rate(&self) -> f64 {
        self.rows as f64 / self.ceiling_secs
    }

    /// Events per second of outboxd.
    pub fn relay_rate(&self) -> Option<f64> {
        self.relay.as_ref().map(|r| self.rows as f64 / r.secs)
    }

    /// outboxd's rate over the ceiling's, both of this run.
    pub fn ratio(&self) -> Option<f64> {
        self.relay.as_ref().map(|r| self.ceiling_secs / r.secs)
    }

    /// outboxd's payload megabytes per second (JSON as read from the WAL).
    pub fn relay_mb_per_s(&self) -> Option<f64> {
        self.relay
            .as_ref()
            .map(|r| self.payload_bytes as f64 / r.secs / 1e6)
    }
}

/// Runs one case once; `perf_dir` profiles outboxd's part; `peers` run after outboxd, one at a time.
pub async fn run(
    bench: &Bench,
    case: ThroughputCase,
    perf_dir: Option<&Path>,
    peers: Option<&Peers>,
) -> Result<ThroughputResult> {
    let name = run_name();
    let db = BenchDb::create(&bench.services, &name).await?;
    let topics = RunTopics::for_run(&name);
    let result = run_in(bench, &db, &topics, case, perf_dir, peers).await;
    let dropped = db.drop_all().await;
    if bench.relay.is_some() {
        if let Err(e) = kafka::delete_topics(&bench.services.kafka_bootstrap, &topics.all()).await {
            eprintln!("bench: deleting the topics of {name}: {e:#}");
        }
    }
    let result = result.with_context(|| format!("run {name}"))?;
    dropped.with_context(|| format!("dropping database {name} and its slots"))?;
    Ok(result)
}

async fn run_in(
    bench: &Bench,
    db: &BenchDb,
    topics: &RunTopics,
    case: ThroughputCase,
    perf_dir: Option<&Path>,
    peers: Option<&Peers>,
) -> Result<ThroughputResult> {
    let (ceiling_slot, relay_slot) = (format!("{}_ceiling", db.name), format!("{}_relay", db.name));
    let raw_slot = format!("{}_raw", db.name);
    let start_lsn = db.create_slot(&ceiling_slot).await?;
    db.create_slot(&relay_slot).await?;
    db.create_slot(&raw_slot).await?;
    // The peers' slots at the same point, before the rows: every reader gets identical WAL.
    let peer_slots = peers.map_or_else(Vec::new, |p| p.slot_names(&db.name));
    for slot in &peer_slots {
        db.create_slot(slot).await?;
    }
    let prewrite = db.prewrite(case.rows, case.per_tx, bench.sessions).await?;
    let end_lsn = db.flush_lsn().await?;
    let (count, payload_bytes) = db.payload_stats().await?;
    ensure!(
        count == case.rows,
        "pre-writing left {count} rows, expected {}",
        case.rows
    );
    let wal_bytes = db.wal_bytes(&start_lsn, &end_lsn).await?;
    let timeout = run_timeout(case.rows);
    let ceiling = CeilingRun {
        services: &bench.services,
        db_url: &db.url,
        slot: &ceiling_slot,
        publication: PUBLICATION,
        end_lsn: &end_lsn,
        timeout,
    }
    .run()
    .await?;
    let (raw, commits) = RawCeilingRun {
        db_url: &db.url,
        slot: &raw_slot,
        publication: PUBLICATION,
        end_lsn: &end_lsn,
        timeout,
    }
    .run()
    .await?;
    let txns = case.rows.div_ceil(case.per_tx.max(1));
    ensure!(
        commits >= txns,
        "the raw client saw {commits} commits, expected at least {txns}"
    );
    let mut result = ThroughputResult {
        rows: case.rows,
        per_tx: case.per_tx,
        prewrite_secs: prewrite.as_secs_f64(),
        payload_bytes,
        wal_bytes,
        ceiling_secs: ceiling.min(raw).as_secs_f64(),
        recvlogical_secs: ceiling.as_secs_f64(),
        raw_client_secs: raw.as_secs_f64(),
        relay: None,
        peers: Vec::new(),
    };
    if bench.relay.is_none() {
        result.peers = run_peers(bench, db, peers, &peer_slots, case.rows).await;
        return Ok(result);
    }
    let target = RunTarget {
        name: &db.name,
        db_url: &db.url,
        slot: &relay_slot,
        publication: PUBLICATION,
        topics,
    };
    let deadline = Instant::now() + timeout;
    let spec = ConsumerSpec {
        bootstrap: bench.services.kafka_bootstrap.clone(),
        topic: topics.events.clone(),
        deadline,
        latency_from: None,
        record_visible: false,
    };
    let mut walsender = None;
    let walsender_ref = &mut walsender;
    let mut cpu = (None, None);
    let cpu_ref = &mut cpu;
    let slot = relay_slot.as_str();
    let drained = bench
        .drain(
            &target,
            spec,
            Some(case.rows),
            perf_dir,
            |consumer, mut relay| async move {
                let waited = wait_consumed(&consumer, &mut relay, case.rows, deadline).await;
                *walsender_ref = db.slot_pid(slot).await.ok().flatten();
                *cpu_ref = (
                    procstat::cpu_secs(relay.pid()),
                    (*walsender_ref).and_then(procstat::cpu_secs),
                );
                (consumer, relay, waited)
            },
        )
        .await?;
    if let Some(dir) = perf_dir {
        let pids = KnownPids {
            relay: drained.pid,
            bench: std::process::id(),
            walsender,
        };
        let summary = profile::summarize(dir, &pids).await?;
        eprintln!("bench: CPU during the profiled run:\n{summary}");
    }
    let c = &drained.consumed;
    let done = c.done_at.context("the consumer did not record the last event")?;
    let first = c.first_at.context("the consumer saw no event")?;
    result.relay = Some(RelayResult {
        secs: (done - drained.started).as_secs_f64(),
        first_event_secs: (first - drained.started).as_secs_f64(),
        peak_rss: drained.peak_rss,
        value_bytes: c.value_bytes,
        duplicates: c.duplicates,
        cpu_secs: cpu.0,
        walsender_cpu_secs: cpu.1,
    });
    result.peers = run_peers(bench, db, peers, &peer_slots, case.rows).await;
    Ok(result)
}

/// The peers, one after the other on their slots (none without `--peers`).
async fn run_peers(
    bench: &Bench,
    db: &BenchDb,
    peers: Option<&Peers>,
    slots: &[String],
    rows: u64,
) -> Vec<PeerResult> {
    let Some(peers) = peers else {
        return Vec::new();
    };
    let run_dir = bench.work_dir.join(&db.name);
    debezium::run_all(
        &bench.services,
        peers,
        db,
        slots,
        rows,
        bench.partitions,
        &run_dir,
    )
    .await
}
