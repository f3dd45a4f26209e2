//! The idempotency stores: did this consumer group already apply (or dead-letter) this event id?

mod inbox;
mod redis;

pub(crate) use self::inbox::Inbox;
pub(crate) use self::redis::RedisStore;

use crate::config::StoreConfig;
use crate::error::{ConsumerError, HandlerError};
use crate::event::Event;
use crate::handler::{Effects, Handler};

/// What became of one attempt.
#[derive(Debug)]
pub(crate) enum StoreOutcome {
    /// The handler ran and its effect is durable, with the id recorded.
    Applied,
    /// The id was already recorded: skipped (a redelivery).
    Duplicate,
}

/// Why an attempt did not complete.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// The store itself failed (connection lost, server away): try the same event again, not counted as a
    /// handler attempt.
    Store(String),
    /// The handler failed (its transaction, if any, is rolled back).
    Handler(HandlerError),
}

/// One of the two stores.
#[derive(Debug)]
pub(crate) enum Store {
    Inbox(Inbox),
    Redis(RedisStore),
}

impl Store {
    pub async fn open(config: &StoreConfig, group: &str) -> Result<Store, ConsumerError> {
        match config {
            StoreConfig::PostgresInbox { pg_url, table } => {
                Ok(Store::Inbox(Inbox::open(pg_url, table, group).await?))
            }
            StoreConfig::Redis { url, ttl_secs } => {
                Ok(Store::Redis(RedisStore::open(url, group, *ttl_secs).await?))
            }
        }
    }

    /// The store's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Inbox(_) => "postgres_inbox",
            Store::Redis(_) => "redis",
        }
    }

    /// Runs the handler unless the id is recorded; records it with the effect.
    pub async fn apply<H: Handler>(
        &self,
        handler: &H,
        event: &Event<H::Payload>,
    ) -> Result<StoreOutcome, AttemptError> {
        match self {
            Store::Inbox(s) => s.apply(handler, event).await,
            Store::Redis(s) => {
                if s.seen(&event.meta.event_id).await? {
                    return Ok(StoreOutcome::Duplicate);
                }
                handler
                    .handle(event, Effects::none())
                    .await
                    .map_err(AttemptError::Handler)?;
                // The effect happened: never run the handler again for a failing SET, retry the SET alone.
                let mut pause = std::time::Duration::from_millis(50);
                for _ in 0..6 {
                    match s.record(&event.meta.event_id, "applied").await {
                        Ok(()) => return Ok(StoreOutcome::Applied),
                        Err(AttemptError::Store(e)) => tracing::warn!(error = %e, "retrying the Redis SET"),
                        Err(e) => return Err(e),
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                tracing::error!(
                    event_id = %event.meta.event_id,
                    "the event was applied but Redis did not record it: a redelivery would apply it again"
                );
                Ok(StoreOutcome::Applied)
            }
        }
    }

    /// True when the id is recorded (applied or dead-lettered before).
    pub async fn seen(&self, event_id: &str) -> Result<bool, AttemptError> {
        match self {
            Store::Inbox(s) => s.seen(event_id).await,
            Store::Redis(s) => s.seen(event_id).await,
        }
    }

    /// Records that the event went to the dead-letter topic, so a redelivery is skipped.
    pub async fn record_dead_letter(
        &self,
        event_id: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), AttemptError> {
        match self {
            Store::Inbox(s) => {
                s.record(event_id, topic, partition, offset, "dead_lettered")
                    .await
            }
            Store::Redis(s) => s.record(event_id, "dead_lettered").await,
        }
    }
}
