//! The pipeline: WAL source -> checks, routing, Avro -> transactional Kafka sink, with restarts.
//!
//! Each attempt starts from the top in the order the exactly-once argument needs (`init_transactions`, read
//! the checkpoint `C`, start replication skipping through `C`); a restartable failure (connection lost,
//! aborted Kafka transaction, registry away at start) aborts, drops the replication connection and starts
//! again after a backoff. Nothing is replayed from memory: Postgres resends, the checkpoint skips.

mod ahead;
mod backfill;
mod config;
mod error;
mod event;
pub mod fault;
#[cfg(test)]
mod memory;
#[cfg(test)]
mod memory_tests;
mod ports;
mod retention;
mod shutdown;
mod stream;

pub use config::{ObservabilityConfig, PipelineConfig, RestartConfig};
pub use error::PipelineError;
pub use fault::{FaultPlan, FaultPoint};

use crate::http::Health;
use error::AttemptFailure;
use outboxd_avro::Encoder;
use outboxd_core::Lsn;
use outboxd_kafka::{SinkStats, StatsSnapshot};
use outboxd_record::{PayloadEncoder, Stage};
use ports::{Endpoints, LiveEndpoints};
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
    let mut restarts = Restarts::new(&config.restart);
    let encoder = loop {
        let failure = match Encoder::connect(config.avro.clone()).await {
            Ok(encoder) => break encoder,
            Err(e) => AttemptFailure::from(e),
        };
        if !restarts.pause_or_give_up(failure, &mut shutdown).await? {
            return Ok(outcome(StopReason::Shutdown, restarts.total));
        }
    };
    let stage = Stage::new(&config.kafka, encoder).map_err(|e| PipelineError::Config(e.to_string()))?;
    let endpoints = LiveEndpoints {
        config: &config,
        stats: &options.stats,
        created: std::sync::Mutex::new(None),
    };
    let (basis, watching) = tokio::sync::watch::channel(None);
    let retention = config
        .source
        .retention
        .max_age_s
        .is_some()
        .then(|| tokio::spawn(retention::run(config.source_config(), watching)));
    let ctx = RunContext {
        config: &config,
        stage: &stage,
        endpoints: &endpoints,
        faults: &options.faults,
        health: &options.health,
        basis: &basis,
    };
    let reason = run_attempts(&ctx, &mut restarts, &mut shutdown).await;
    if let Some(task) = retention {
        task.abort();
    }
    Ok(outcome(reason?, restarts.total))
}

/// The pipeline core: attempts, each from the top, until shutdown, a fault stop, or a failure a restart cannot
/// fix. Returns why it stopped and the restarts it made. Generic over its endpoints and encoder, so that its
/// unit tests run it on in-memory ones.
async fn run_attempts<P: Endpoints, E: PayloadEncoder>(
    ctx: &RunContext<'_, P, E>,
    restarts: &mut Restarts<'_>,
    shutdown: &mut Shutdown<'_>,
) -> Result<StopReason, PipelineError> {
    loop {
        let (failure, committed) = match Attempt::start(ctx).await {
            Err(failure) => (failure, false),
            Ok(mut attempt) => match attempt.run(shutdown).await {
                Ok(Ended::Shutdown) => return Ok(StopReason::Shutdown),
                Ok(Ended::Fault(point)) => return Ok(StopReason::Fault(point)),
                Err(failure) => {
                    let committed = attempt.committed;
                    attempt.close().await;
                    (failure, committed)
                }
            },
        };
        ctx.health.set_ready(false);
        metrics::gauge!(crate::metrics::SLOT_ACTIVE).set(0.0);
        if committed {
            restarts.progress();
        }
        if !restarts.pause_or_give_up(failure, shutdown).await? {
            return Ok(StopReason::Shutdown);
        }
    }
}

/// The restart policy's state: restarts so far, in a row without a commit, and the next backoff.
#[derive(Debug)]
struct Restarts<'a> {
    policy: &'a RestartConfig,
    total: u32,
    in_a_row: u32,
    backoff: Duration,
}

impl<'a> Restarts<'a> {
    fn new(policy: &'a RestartConfig) -> Self {
        Restarts {
            policy,
            total: 0,
            in_a_row: 0,
            backoff: policy.initial_backoff(),
        }
    }

    /// An attempt committed something: the next failure starts a new series with the initial backoff.
    fn progress(&mut self) {
        self.in_a_row = 0;
        self.backoff = self.policy.initial_backoff();
    }

    /// After a failed attempt: halt, or wait out the backoff. Returns false when shutdown came during the wait.
    async fn pause_or_give_up(
        &mut self,
        failure: AttemptFailure,
        shutdown: &mut Shutdown<'_>,
    ) -> Result<bool, PipelineError> {
        let (stage, reason) = match failure {
            AttemptFailure::Halt(e) => {
                tracing::error!(error = %e, "pipeline stopped");
                return Err(e);
            }
            AttemptFailure::Restart(stage, reason) => (stage, reason),
        };
        self.in_a_row += 1;
        if self.policy.max_restarts.is_some_and(|max| self.in_a_row > max) {
            return Err(PipelineError::TooManyRestarts {
                restarts: self.in_a_row - 1,
                last: Box::new(reason),
            });
        }
        let backoff = self.backoff;
        tracing::warn!(
            stage,
            reason = %reason,
            ?backoff,
            "restarting the pipeline from the last checkpoint"
        );
        metrics::counter!(crate::metrics::PIPELINE_RESTARTS, "reason" => stage).increment(1);
        if shutdown.fired() {
            return Ok(false);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return Ok(false),
        }
        self.backoff = (backoff * 2).min(self.policy.max_backoff());
        self.total += 1;
        Ok(true)
    }
}
