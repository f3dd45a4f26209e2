//! outboxd as a library: the pipeline that relays a Postgres transactional outbox to Kafka exactly once, for
//! the `outboxd` binary and the tests.
//!
//! ```text
//!  outboxd-wal Source ──TxEvent (bounded channel)──▶ pipeline ──outboxd-record Stage──▶ outboxd-kafka Sink
//!        ▲                                                                                        │
//!        └──────── SourceHandle::confirm(end LSN), only after commit_transaction returned ◀───────┘
//! ```
//!
//! Guarantees (for `read_committed` consumers): every outbox row reaches its topic, or the dead-letter topic,
//! exactly once, in commit order per aggregate; see [`pipeline`] and `docs/architecture.md`. Memory is bounded
//! whatever the transaction size or broker speed: the source channel and librdkafka's queue are bounded, and
//! no event is kept for replay (a restart re-reads from Postgres and skips through the Kafka checkpoint).

pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod registry_wait;

pub use pipeline::{
    run, run_with, FaultPlan, FaultPoint, ObservabilityConfig, PipelineConfig, PipelineError, RestartConfig,
    RunOptions, RunOutcome, StopReason,
};
