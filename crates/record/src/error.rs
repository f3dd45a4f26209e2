//! [`RecordError`]: why the stage could not decide what becomes of an event. A rejected event is not an error
//! (it is a [`crate::Prepared::Rejected`] and goes to the dead-letter topic); these are the cases where no
//! decision may be made yet (the registry is away: retry the same event) or ever (the contract is broken: halt).

use outboxd_avro::{AvroError, EncodeError, Rejection};

/// Why no decision was made for an event, by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The schema registry could not be asked (unreachable, 5xx, timeout): pause and retry the same event;
    /// nothing is lost and nothing goes to the dead-letter topic.
    #[error("schema registry unavailable (check schema_registry.url and that the registry is up): {0}")]
    RegistryUnavailable(#[source] AvroError),
    /// The contract itself is broken (a subject resolved at first use failed the compatibility gate, or the
    /// registry refused a request): halt; restarting without a fix fails the same way.
    #[error("{0}")]
    Contract(#[source] AvroError),
    /// The routing configuration cannot work.
    #[error("invalid routing configuration: {0}")]
    Config(String),
}

impl RecordError {
    /// True when retrying the same event later can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, RecordError::RegistryUnavailable(_))
    }

    /// The registry or config error inside, for the caller's own error type.
    pub fn into_avro(self) -> Result<AvroError, String> {
        match self {
            RecordError::RegistryUnavailable(e) | RecordError::Contract(e) => Ok(e),
            RecordError::Config(s) => Err(s),
        }
    }
}

/// An encoder answer split into the decision (encoded, or rejected) and what is no decision (retry, halt).
pub(crate) fn decided<T>(answer: Result<T, EncodeError>) -> Result<Result<T, Rejection>, RecordError> {
    match answer {
        Ok(v) => Ok(Ok(v)),
        Err(EncodeError::Rejected(r)) => Ok(Err(r)),
        Err(EncodeError::Retriable(e)) => Err(RecordError::RegistryUnavailable(e)),
        Err(EncodeError::Fatal(e)) => Err(RecordError::Contract(e)),
    }
}
