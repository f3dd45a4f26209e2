//! `outboxd dlq replay`: re-sends the dead letters that now fit their schemas, exactly once.
//!
//! ```text
//!  dead-letter topic ──read_committed, group <pipeline id>-dlq-replay, committed offset → end at start──▶ triage
//!     ├─ cannot be replayed (no intended topic, decode defect, ...) ──▶ dead-letter topic again (dlq_replays+1)
//!     └─ Avro Encoder (current schemas) ─┬─ fits ──▶ intended topic (pipeline headers + dlq_replayed_from)
//!                                        └─ still rejected ──▶ dead-letter topic again (new reason, dlq_replays+1)
//!  one Kafka transaction per kafka.batch.max_events dead letters, holding the records AND the group's offsets
//! ```
//!
//! A crash or an error before a commit leaves nothing visible and the offsets where they were: running again
//! handles the same dead letters, once. `--dry-run` reads and validates only (no producer, no offsets).

use super::exit::Exit;
use crate::DlqCommand;
use outboxd::registry_wait::{patiently, Patience, Waited};
use outboxd::{FaultPlan, FaultPoint, PipelineConfig};
use outboxd_avro::Encoder;
use outboxd_kafka::{DeadLetter, DlqReader, ReplayIdentity, Replayer, SinkError, Written};
use outboxd_record::{ReplayPlan, Stage};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Item lines printed at most; the summary always counts everything.
const LIST_LIMIT: usize = 200;

/// Runs a `dlq` subcommand.
pub async fn run(config: &PipelineConfig, cmd: DlqCommand) -> Exit {
    match cmd {
        DlqCommand::Replay { dry_run, max_events } => replay(config, dry_run, max_events).await,
    }
}

/// The replay's consumer group and transactional id, derived from the pipeline's.
pub fn identity(config: &PipelineConfig) -> ReplayIdentity {
    ReplayIdentity {
        group_id: format!("{}-dlq-replay", config.pipeline_id()),
        transactional_id: format!("{}-dlq-replay", config.transactional_id()),
    }
}

/// Counts and the report lines.
#[derive(Default)]
struct Tally {
    read: u64,
    replayed: u64,
    failing: BTreeMap<String, u64>,
    not_replayable: u64,
    listed: usize,
}

impl Tally {
    fn line(&mut self, text: String) {
        self.listed += 1;
        if self.listed <= LIST_LIMIT {
            println!("{text}");
        } else if self.listed == LIST_LIMIT + 1 {
            println!("... (further dead letters not listed; the summary counts them all)");
        }
    }

    fn failing(&mut self, reason: &str) {
        *self.failing.entry(reason.to_string()).or_default() += 1;
    }

    fn summary(&self, dry_run: bool) -> String {
        let failing: u64 = self.failing.values().sum();
        let by_reason = self
            .failing
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (replay, fail) = if dry_run {
            ("would replay", "would still fail")
        } else {
            ("replayed", "still failing")
        };
        let mut s = format!("{replay} {}, {fail} {failing}", self.replayed);
        if failing > 0 {
            s.push_str(&format!(" ({by_reason}"));
            if self.not_replayable > 0 {
                s.push_str(&format!("; {} not replayable at all", self.not_replayable));
            }
            s.push(')');
        }
        s.push_str(&format!(", of {} dead letter(s) read", self.read));
        s
    }
}

fn describe(dl: &DeadLetter) -> String {
    format!(
        "{} id={} {}",
        dl.position(),
        dl.header("id").unwrap_or("?"),
        dl.header("event_type").unwrap_or("?")
    )
}

/// The pipeline's own stage decides (triage, then the current schemas). Registry outages are retried for up
/// to `patience`; a broken contract halts.
async fn decide(stage: &Stage<Encoder>, dl: &DeadLetter, patience: Duration) -> Result<ReplayPlan, String> {
    let patience = Patience {
        max_backoff: Duration::from_secs(5),
        give_up_at: Some(Instant::now() + patience),
    };
    match patiently(patience, std::future::pending(), || stage.prepare_replay(dl)).await {
        Ok(Waited::Done(plan)) => Ok(plan),
        Ok(Waited::Interrupted) => Err("interrupted while waiting for the schema registry".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn replay(config: &PipelineConfig, dry_run: bool, max_events: Option<u64>) -> Exit {
    outboxd_wal::install_crypto_provider();
    let faults = match FaultPlan::from_env() {
        Ok(f) => f,
        Err(e) => return Exit::usage(format!("OUTBOXD_FAULT: {e}")),
    };
    let encoder = match Encoder::connect(config.avro.clone()).await {
        Ok(e) => e,
        Err(e) => return Exit::failed(format!("cannot load the current schemas: {e}")),
    };
    let stage = match Stage::new(&config.kafka, encoder) {
        Ok(s) => s,
        Err(e) => return Exit::usage(e.to_string()),
    };
    let identity = identity(config);
    let mut ctx = ReplayRun {
        stage: &stage,
        patience: Duration::from_millis(config.kafka.request_timeout_ms),
        per_txn: usize::try_from(config.kafka.batch.max_events)
            .unwrap_or(usize::MAX)
            .max(1),
        left: max_events.unwrap_or(u64::MAX),
    };
    let topic = &config.kafka.dlq_topic;
    if dry_run {
        let reader = match DlqReader::open(&config.kafka, &identity.group_id).await {
            Ok(r) => r,
            Err(e) => return Exit::failed(e.to_string()),
        };
        println!(
            "dlq replay --dry-run: up to {} dead letter(s) in {topic} after group {}'s offsets",
            reader.remaining(),
            identity.group_id
        );
        return match ctx.dry_run(reader).await {
            Ok(tally) => {
                println!(
                    "{}; dry run: nothing was produced or committed",
                    tally.summary(true)
                );
                Exit::ok()
            }
            Err(e) => Exit::failed(e),
        };
    }
    let mut replayer = match Replayer::start(config.kafka.clone(), &identity).await {
        Ok(r) => r,
        Err(e) => return sink_exit(e),
    };
    println!(
        "dlq replay: up to {} dead letter(s) in {topic} after group {}'s offsets (transactional.id {})",
        replayer.reader().remaining(),
        identity.group_id,
        identity.transactional_id
    );
    let mut tally = Tally::default();
    match ctx.replay(&mut replayer, &mut tally, &faults).await {
        Ok(()) => {
            println!("{}", tally.summary(false));
            Exit::ok()
        }
        Err(failure) => {
            let _ = replayer.abort().await;
            println!(
                "{} before the failure (the open transaction's share of it was rolled back)",
                tally.summary(false)
            );
            match failure {
                ReplayFailure::Sink(e) => sink_exit(e),
                ReplayFailure::Other(e) => Exit::failed(format!(
                    "{e}; the open transaction was aborted (committed batches stay committed): run again"
                )),
            }
        }
    }
}

fn sink_exit(e: SinkError) -> Exit {
    if e.is_fenced() {
        Exit::fenced(format!(
            "{e}; another `outboxd dlq replay` of this pipeline took over"
        ))
    } else {
        Exit::failed(format!("{e}; nothing uncommitted is visible: run again"))
    }
}

/// Why a replay stopped before the end.
enum ReplayFailure {
    Sink(SinkError),
    Other(String),
}

impl From<SinkError> for ReplayFailure {
    fn from(e: SinkError) -> Self {
        ReplayFailure::Sink(e)
    }
}

/// What both modes share.
struct ReplayRun<'a> {
    stage: &'a Stage<Encoder>,
    patience: Duration,
    per_txn: usize,
    left: u64,
}

impl ReplayRun<'_> {
    fn want(&self, in_txn: usize) -> usize {
        let room = self.per_txn.saturating_sub(in_txn).max(1);
        usize::try_from(self.left).map_or(room, |left| left.min(room))
    }

    async fn dry_run(mut self, mut reader: DlqReader) -> Result<Tally, String> {
        let mut tally = Tally::default();
        loop {
            let chunk = reader.next_chunk(self.want(0)).await.map_err(|e| e.to_string())?;
            if chunk.is_empty() {
                return Ok(tally);
            }
            self.left -= chunk.len() as u64;
            for dl in &chunk {
                tally.read += 1;
                match decide(self.stage, dl, self.patience).await? {
                    ReplayPlan::Replay(record) => {
                        tally.replayed += 1;
                        tally.line(format!("  would replay   {} -> {}", describe(dl), record.topic));
                    }
                    ReplayPlan::StillFailing(r) => {
                        tally.failing(r.reason.code());
                        tally.line(format!(
                            "  still failing  {}: {}: {}",
                            describe(dl),
                            r.reason,
                            r.detail
                        ));
                    }
                    ReplayPlan::Keep { why } => {
                        tally.failing(dl.reason());
                        tally.not_replayable += 1;
                        tally.line(format!("  not replayable {}: {why}", describe(dl)));
                    }
                }
            }
        }
    }

    async fn replay(
        &mut self,
        replayer: &mut Replayer,
        tally: &mut Tally,
        faults: &FaultPlan,
    ) -> Result<(), ReplayFailure> {
        let mut in_txn = 0usize;
        loop {
            let chunk = if self.left == 0 {
                Vec::new()
            } else {
                replayer.next_chunk(self.want(in_txn)).await?
            };
            if chunk.is_empty() {
                break;
            }
            self.left -= chunk.len() as u64;
            replayer.begin()?;
            for dl in &chunk {
                tally.read += 1;
                self.handle(replayer, tally, dl).await?;
            }
            in_txn += chunk.len();
            if in_txn >= self.per_txn {
                self.commit(replayer, faults).await?;
                in_txn = 0;
            }
        }
        self.commit(replayer, faults).await
    }

    async fn handle(
        &self,
        replayer: &mut Replayer,
        tally: &mut Tally,
        dl: &DeadLetter,
    ) -> Result<(), ReplayFailure> {
        let (reason, detail) = match decide(self.stage, dl, self.patience)
            .await
            .map_err(ReplayFailure::Other)?
        {
            ReplayPlan::Replay(record) => match replayer.replay(&record).await? {
                Written::Queued => {
                    tally.replayed += 1;
                    tally.line(format!("  replayed       {} -> {}", describe(dl), record.topic));
                    return Ok(());
                }
                Written::Refused { reason, detail } => (reason, detail),
            },
            ReplayPlan::StillFailing(r) => (r.reason, r.detail),
            ReplayPlan::Keep { why } => {
                replayer.requeue(dl, None).await?;
                tally.failing(dl.reason());
                tally.not_replayable += 1;
                tally.line(format!("  not replayable {}: {why}", describe(dl)));
                return Ok(());
            }
        };
        replayer.requeue(dl, Some((reason.code(), &detail))).await?;
        tally.failing(reason.code());
        tally.line(format!("  still failing  {}: {reason}: {detail}", describe(dl)));
        Ok(())
    }

    /// Commits the open transaction; `OUTBOXD_FAULT=crash_before_commit:<n>` aborts the process instead,
    /// once the records and offsets of the transaction reached the broker (for the crash tests).
    async fn commit(&self, replayer: &mut Replayer, faults: &FaultPlan) -> Result<(), ReplayFailure> {
        if faults.watches(FaultPoint::BeforeCommit) && replayer.in_transaction() {
            replayer.prepare_commit().await?;
            eprintln!("outboxd: OUTBOXD_FAULT crash_before_commit: aborting the process before the commit");
            std::process::abort();
        }
        Ok(replayer.commit().await?)
    }
}
