//! outboxd-consumer: the consumer side of the transactional outbox. It reads the topics outboxd writes,
//! `read_committed`, decodes their Confluent-framed Avro through the schema registry into the application's
//! serde type, and calls the application's [`Handler`] once per event, so that each event's effects happen
//! exactly once (Postgres inbox) or at most once per TTL window in the common case (Redis store).
//!
//! ```text
//!  Kafka (outboxd's topics, read_committed, consumer group)
//!    └─ fetch loop ──bounded queue per partition──▶ partition worker (one event at a time, in offset order;
//!                                                   at most max_in_flight events over all partitions)
//!         decode: frame → schema by id (registry, cached) → Avro → Handler::Payload
//!         store:  Postgres inbox: BEGIN; INSERT event id ON CONFLICT DO NOTHING; handler(tx); COMMIT
//!                 Redis: EXISTS id? → handler → SET id EX ttl
//!         failure: retry with exponential backoff, then the consumer's dead-letter topic (reason headers)
//!         then:   store offset + 1 ──▶ librdkafka commits it (periodically, on revoke, on close)
//! ```
//!
//! Guarantees:
//! - An offset is committed only after the event's effect (or its dead letter) is durable: a crash at any
//!   point loses nothing; what was in hand is delivered again and the store skips what it recorded.
//! - With the Postgres inbox, the event id and the handler's writes commit in one transaction: every event's
//!   effect exactly once, whatever crashes, rebalances or redeliveries. With Redis, a crash between the
//!   effect and the `SET` repeats that event's effect, and ids are forgotten after the TTL (docs/consumers.md).
//! - Events of one partition (so of one aggregate: outboxd keys by aggregate id) are applied in order; a
//!   poison event goes to the dead-letter topic and the partition moves on.
//! - Memory is bounded: a slow handler fills its partition's queue, which stops the fetching.
//!
//! Entry point: [`run`]`(config, handler, shutdown)`. Metric names: [`metrics`]; the handler contract:
//! [`Handler`]; configuration: [`ConsumerConfig`]; errors: [`ConsumerError`], [`HandlerError`].

mod backoff;
pub mod config;
mod decode;
pub mod dlq;
mod error;
pub mod event;
mod handler;
pub mod metrics;
mod partition;
mod runner;
mod stats;
mod store;
mod trace;

pub use config::{ConsumerConfig, RetryConfig, StoreConfig};
pub use dlq::DeadLetterReason;
pub use error::{BoxError, ConsumerError, HandlerError};
pub use event::{Event, EventMeta};
pub use handler::{Effects, Handler};
pub use runner::run_with_stats;
pub use stats::{ConsumerStats, ConsumerStatsSnapshot};

use std::future::Future;

/// Consumes `config.topics` with `handler` until `shutdown` resolves, then finishes the events in hand,
/// commits their offsets and leaves the group. Returns an error only for what prevents starting (see
/// [`ConsumerError::is_retriable`]); failures while running are retried or dead-lettered, never returned.
pub async fn run<H: Handler>(
    config: ConsumerConfig,
    handler: H,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ConsumerError> {
    run_with_stats(config, handler, shutdown, Default::default()).await
}
