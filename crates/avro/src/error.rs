//! Errors, split by what the caller must do: retry ([`AvroError::is_retriable`]), halt (every other
//! [`AvroError`]), or route one event to the dead-letter topic ([`Rejection`]).

use crate::gate::GateReport;
use std::path::PathBuf;

/// Stable machine-readable rejection reasons (the dead-letter topic carries them in a header).
pub mod reason {
    /// The payload is not valid JSON (or not UTF-8).
    pub const INVALID_JSON: &str = "invalid_json";
    /// The payload is JSON but does not fit the event type's schema.
    pub const SCHEMA_MISMATCH: &str = "schema_mismatch";
    /// No schema is configured or found for the event type.
    pub const UNKNOWN_EVENT_TYPE: &str = "unknown_event_type";
}

/// One event that cannot be encoded: the sink routes it to the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Stable code from [`reason`] (`schema_mismatch`, `invalid_json`, `unknown_event_type`).
    pub reason: &'static str,
    /// What was wrong, for a human: `$.items[2].qty: expected int, got "three"`.
    pub detail: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// Why [`crate::Encoder::encode`] produced no bytes.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The registry could not be asked (unreachable, 5xx, timeout): pause and retry the same event; nothing
    /// is lost and nothing goes to the dead-letter topic.
    #[error("retriable: {0}")]
    Retriable(AvroError),
    /// This event cannot be encoded: route it to the dead-letter topic with the reason.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// The contract itself is broken (a subject resolved at first use failed the gate, or the registry
    /// refused a request): halt; restarting without a fix fails the same way.
    #[error("fatal: {0}")]
    Fatal(AvroError),
}

impl EncodeError {
    /// Wraps a registry/config error by what it calls for: retry or halt.
    pub fn from_avro(e: AvroError) -> Self {
        if e.is_retriable() {
            EncodeError::Retriable(e)
        } else {
            EncodeError::Fatal(e)
        }
    }

    /// A rejection with a reason code from [`reason`].
    pub fn rejected(reason: &'static str, detail: impl Into<String>) -> Self {
        EncodeError::Rejected(Rejection {
            reason,
            detail: detail.into(),
        })
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_retriable(&self) -> bool {
        matches!(self, EncodeError::Retriable(_))
    }
}

/// Errors of the Avro stage other than per-event rejections.
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    /// No answer from the registry (connection refused, reset, DNS, timeout). Retriable.
    #[error(
        "schema registry at {url} did not answer {what}: {detail}. Is it running and reachable? Retrying"
    )]
    Unreachable {
        /// Registry base URL.
        url: String,
        /// The request, e.g. `GET /subjects/x/versions`.
        what: String,
        /// The transport error.
        detail: String,
    },
    /// The registry answered with a server error (5xx). Retriable.
    #[error("schema registry answered {status} to {what} (error_code {error_code:?}): {message}. Retrying")]
    RegistryUnavailable {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's `error_code`, when it sent one.
        error_code: Option<i64>,
        /// The registry's message.
        message: String,
    },
    /// The registry refused a request (4xx other than the "not found" answers the gate handles). Fatal.
    #[error(
        "schema registry refused {what} with {status} (error_code {error_code:?}): {message}. Check the \
         registry URL, credentials and the schema"
    )]
    RegistryRejected {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's `error_code`, when it sent one.
        error_code: Option<i64>,
        /// The registry's message.
        message: String,
    },
    /// The registry answered 2xx with a body we cannot use. Fatal.
    #[error(
        "schema registry gave an unexpected answer to {what}: {detail}. Is registry_url a schema registry?"
    )]
    BadResponse {
        /// The request.
        what: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A schema file could not be read or is not a valid Avro schema. Fatal.
    #[error("schema file {}: {detail}", path.display())]
    SchemaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The schema directory could not be listed. Fatal.
    #[error("schema directory {}: {detail}. Set avro.schema_dir to a readable directory of .avsc files", path.display())]
    SchemaDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A schema fetched from the registry is not usable. Fatal.
    #[error("schema {what} from the registry: {detail}")]
    RegistrySchema {
        /// Which schema (subject/version or id).
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Inconsistent configuration. Fatal.
    #[error("avro configuration: {0}")]
    Config(String),
    /// The schema gate failed (incompatible, missing, or a compatibility level differs). Fatal.
    #[error("schema gate failed:\n{0}")]
    GateFailed(Box<GateReport>),
}

impl AvroError {
    /// Whether the same call can succeed later without any change (the registry was away or overloaded).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            AvroError::Unreachable { .. } | AvroError::RegistryUnavailable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_split() {
        let unreachable = AvroError::Unreachable {
            url: "u".into(),
            what: "GET /".into(),
            detail: "refused".into(),
        };
        assert!(unreachable.is_retriable());
        assert!(EncodeError::from_avro(unreachable).is_retriable());
        let refused = AvroError::RegistryRejected {
            what: "POST /x".into(),
            status: 422,
            error_code: Some(42201),
            message: "bad".into(),
        };
        assert!(!refused.is_retriable());
        assert!(matches!(EncodeError::from_avro(refused), EncodeError::Fatal(_)));
        let file = AvroError::SchemaFile {
            path: "a/B.avsc".into(),
            detail: "bad json".into(),
        };
        assert!(!file.is_retriable());
        assert!(file.to_string().contains("a/B.avsc"));
        let r = EncodeError::rejected(reason::INVALID_JSON, "x");
        assert!(!r.is_retriable());
        assert_eq!(r.to_string(), "rejected: invalid_json: x");
    }
}
