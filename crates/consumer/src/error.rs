//! The crate's one error type, split by what the caller must do, and the handler's own error.

use std::error::Error as StdError;

/// A boxed error from a handler (any error type).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why [`crate::run`] stopped. [`ConsumerError::is_retriable`] tells the caller what to do: retriable errors
/// mean a service was away at start (run again later, nothing was lost: no offset moved past an event whose
/// effect is not durable); the others need a change of configuration or environment first.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The configuration is wrong. Halt and fix it.
    #[error("consumer configuration: {0}")]
    Config(String),
    /// A Kafka client could not be created or could not subscribe. Halt: the settings are wrong.
    #[error("Kafka {what}: {source}. Check bootstrap_servers and the librdkafka settings")]
    KafkaSetup {
        /// What was being done.
        what: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The dead-letter topic could not be created. Retriable (the broker may be away).
    #[error("consumer dead-letter topic: {0}")]
    DeadLetterTopic(String),
    /// Postgres did not answer at start (connect, creating the inbox table). Retriable.
    #[error(
        "Postgres inbox: {what}: {source}. Is the database reachable, and may this user create the table?"
    )]
    PostgresUnavailable {
        /// What was being done.
        what: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Redis did not answer at start. Retriable.
    #[error("Redis store: {what}: {source}. Is redis-server running at the configured url?")]
    RedisUnavailable {
        /// What was being done.
        what: String,
        /// The driver's error.
        #[source]
        source: redis::RedisError,
    },
    /// The schema registry client could not be built. Halt: fix registry_url.
    #[error("schema registry: {0}")]
    Registry(#[source] outboxd_avro::AvroError),
}

impl ConsumerError {
    /// True when running again later may succeed without any change (a service was away).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ConsumerError::PostgresUnavailable { .. }
                | ConsumerError::RedisUnavailable { .. }
                | ConsumerError::DeadLetterTopic(_)
        )
    }
}

/// What a handler answers when it cannot apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May succeed later (a deadlock, a dependency away): retried with backoff up to `retry.max_attempts`,
    /// then dead-lettered as `handler_failed`.
    #[error("retriable: {0}")]
    Retry(#[source] BoxError),
    /// Will never succeed (the event breaks a business rule): dead-lettered as `handler_failed` at once.
    #[error("rejected: {0}")]
    Reject(#[source] BoxError),
}

impl HandlerError {
    /// A retriable failure from any error.
    pub fn retry(e: impl Into<BoxError>) -> HandlerError {
        HandlerError::Retry(e.into())
    }

    /// A permanent failure from any error.
    pub fn reject(e: impl Into<BoxError>) -> HandlerError {
        HandlerError::Reject(e.into())
    }
}

/// A Postgres error inside the handler's transaction is retriable by default (serialization failures,
/// deadlocks, a connection lost): the transaction is rolled back and the event tried again.
impl From<tokio_postgres::Error> for HandlerError {
    fn from(e: tokio_postgres::Error) -> HandlerError {
        HandlerError::Retry(Box::new(e))
    }
}
