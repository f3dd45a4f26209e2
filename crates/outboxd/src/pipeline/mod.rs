//! The pipeline: WAL source -> checks, routing, Avro -> transactional Kafka sink, with restarts.
//!
//! Each attempt starts from the top in the order the exactly-once argument needs (`init_transactions`, read
//! the checkpoint `C`, start replication skipping through `C`); a restartable failure (connection lost,
//! aborted Kafka transaction, registry away at start) aborts, drops the replication connection and starts
//! again after a backoff. Nothing is replayed from memory: Postgres resends, the checkpoint skips.

mod config;
mod error;
mod event;
pub mod fault;
mod shutdown;
mod stream;

pub use config::{ObservabilityConfig, PipelineConfig, RestartConfig};
pub use error::PipelineError;
pub use fault::{FaultPlan, FaultPoint};

use crate::http::Health;
use error::Failure;
use outboxd_avro::Encoder;
use outboxd_core::Lsn;
use outboxd_kafka::{SinkStats, StatsSnapshot};
use shutdown::Shutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use stream::{Attempt, Ended, RunContext};

/// Why [`run`] returned `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The shutdown future resolved: the last complete transaction was committed and confirmed.
    Shutdown,
    /// An in-process fault plan ([`FaultPlan::stop_at`]) stopped it at that point.
    Fault(FaultPoint),
}

/// How a run ended, with its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// Why it stopped.
    pub reason: StopReason,
    /// Restarts after restartable failures during the run.
    pub restarts: u32,
    /// The end LSN of the last committed checkpoint (read at start or written since), `0/0` when none.
    pub checkpoint: Lsn,
    /// The sink's counters at the end.
    pub stats: StatsSnapshot,
}

/// What a run can be given besides its configuration.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Faults to inject ([`FaultPlan::from_env`] for [`run`]).
    pub faults: FaultPlan,
    /// Counters, shared so that a metrics exporter can read them while the pipeline runs.
    pub stats: Arc<SinkStats>,
    /// Readiness, set while the pipeline streams from its slot (for `/readyz`).
    pub health: Arc<Health>,
}

/// Runs the pipeline until `shutdown` resolves (`Ok`), or a failure that a restart cannot fix (`Err`: exit
/// non-zero). Reads `OUTBOXD_FAULT` for fault injection.
pub async fn run(
    config: PipelineConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunOutcome, PipelineError> {
    let faults = FaultPlan::from_env().map_err(PipelineError::Fault)?;
    run_with(
        config,
        shutdown,
        RunOptions {
            faults,
            ..RunOptions::default()
        },
    )
    .await
}

/// [`run`] with explicit options (fault plan, shared counters).
pub async fn run_with(
    config: PipelineConfig,
    shutdown: impl Future<Output = ()> + Send,
    options: RunOptions,
) -> Result<RunOutcome, PipelineError> {
    config.validate().map_err(PipelineError::Config)?;
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = Shutdown::new(shutdown);
    let outcome = |reason, restarts| RunOutcome {
        reason,
        restarts,
        checkpoint: options.stats.snapshot().checkpoint_end_lsn,
        stats: options.stats.snapshot(),
    };
    let restart = &config.restart;
    let mut backoff = restart.initial_backoff();
    let mut restarts = 0u32;
    let mut in_a_row = 0u32;
    let encoder = loop {
        let failure = match Encoder::connect(config.avro.clone()).await {
            Ok(encoder) => break encoder,
            Err(e) => Failure::from(e),
        };
        match pause_or_give_up(failure, restart, &mut in_a_row, &mut backoff, &mut shutdown).await? {
            true => restarts += 1,
            false => return Ok(outcome(StopReason::Shutdown, restarts)),
        }
    };
    let ctx = RunContext {
        config: &config,
        encoder: &encoder,
        faults: &options.faults,
        stats: &options.stats,
        health: &options.health,
    };
    loop {
        let (failure, committed) = match Attempt::start(&ctx).await {
            Err(failure) => (failure, false),
            Ok(mut attempt) => match attempt.run(&mut shutdown).await {
                Ok(Ended::Shutdown) => return Ok(outcome(StopReason::Shutdown, restarts)),
                Ok(Ended::Fault(point)) => return Ok(outcome(StopReason::Fault(point), restarts)),
                Err(failure) => {
                    let committed = attempt.committed;
                    attempt.close().await;
                    (failure, committed)
                }
            },
        };
        options.health.set_ready(false);
        metrics::gauge!(crate::metrics::SLOT_ACTIVE).set(0.0);
        if committed {
            in_a_row = 0;
            backoff = restart.initial_backoff();
        }
        match pause_or_give_up(failure, restart, &mut in_a_row, &mut backoff, &mut shutdown).await? {
            true => restarts += 1,
            false => return Ok(outcome(StopReason::Shutdown, restarts)),
        }
    }
}

/// After a failed attempt: halt, or wait out the backoff. Returns false when shutdown came during the wait.
async fn pause_or_give_up(
    failure: Failure,
    restart: &RestartConfig,
    in_a_row: &mut u32,
    backoff: &mut Duration,
    shutdown: &mut Shutdown<'_>,
) -> Result<bool, PipelineError> {
    let reason = match failure {
        Failure::Halt(e) => {
            tracing::error!(error = %e, "pipeline stopped");
            return Err(e);
        }
        Failure::Restart(stage, reason) => (stage, reason),
    };
    let (stage, reason) = reason;
    *in_a_row += 1;
    if restart.max_restarts.is_some_and(|max| *in_a_row > max) {
        return Err(PipelineError::TooManyRestarts {
            restarts: *in_a_row - 1,
            last: reason,
        });
    }
    tracing::warn!(stage, reason, backoff = ?*backoff, "restarting the pipeline from the last checkpoint");
    metrics::counter!(crate::metrics::PIPELINE_RESTARTS, "reason" => stage).increment(1);
    if shutdown.fired() {
        return Ok(false);
    }
    tokio::select! {
        _ = tokio::time::sleep(*backoff) => {}
        _ = shutdown.wait() => return Ok(false),
    }
    *backoff = (*backoff * 2).min(restart.max_backoff());
    Ok(true)
}
