//! [`FakeEncoder`]: a [`PayloadEncoder`] with no registry, for unit tests of the stage and of the pipeline core
//! (feature `test-encoder`). Not a mock of the registry: it stands in for our own encoder interface.
//!
//! Values are framed as Confluent's are (magic 0, schema id 1, then the payload bytes as they are); a payload
//! that is not JSON is rejected `invalid_json`, one holding `"bad"` as a key `schema_mismatch`, an event
//! type starting with `Unknown` `unknown_event_type`. [`FakeEncoder::fail_next`] makes the next calls find
//! the registry away.

use crate::PayloadEncoder;
use outboxd_avro::{reason, AvroError, EncodeError, EncodedPayload};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

/// The schema id every fake value carries.
pub const FAKE_SCHEMA_ID: u32 = 1;

/// An encoder with no registry (see the module documentation).
#[derive(Debug, Default)]
pub struct FakeEncoder {
    unavailable: AtomicU32,
    calls: AtomicU32,
}

impl FakeEncoder {
    /// The next `n` calls answer "registry unavailable".
    pub fn fail_next(&self, n: u32) {
        self.unavailable.store(n, Ordering::SeqCst);
    }

    /// Calls so far (value and key encodings, failed ones included).
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn away(&self) -> Option<EncodeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.unavailable.load(Ordering::SeqCst);
        (left > 0).then(|| {
            self.unavailable.store(left - 1, Ordering::SeqCst);
            EncodeError::Retriable(AvroError::Unreachable {
                url: "http://fake-registry".into(),
                what: "GET /subjects".into(),
                detail: "the fake registry is away".into(),
            })
        })
    }

    fn value(&self, event_type: &str, payload: &[u8]) -> Result<EncodedPayload, EncodeError> {
        if let Some(e) = self.away() {
            return Err(e);
        }
        if event_type.starts_with("Unknown") {
            return Err(EncodeError::rejected(
                reason::UNKNOWN_EVENT_TYPE,
                format!("no schema for {event_type}"),
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| EncodeError::rejected(reason::INVALID_JSON, e.to_string()))?;
        if json.get("bad").is_some() {
            return Err(EncodeError::rejected(
                reason::SCHEMA_MISMATCH,
                "$.bad: not in the schema",
            ));
        }
        let mut bytes = vec![0];
        bytes.extend_from_slice(&FAKE_SCHEMA_ID.to_be_bytes());
        bytes.extend_from_slice(payload);
        Ok(EncodedPayload {
            bytes,
            schema_id: FAKE_SCHEMA_ID,
            subject: format!("{event_type}-value").into(),
            version: Some(1),
        })
    }
}

impl PayloadEncoder for FakeEncoder {
    fn encode(
        &self,
        _topic: &str,
        event_type: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<EncodedPayload, EncodeError>> + Send {
        std::future::ready(self.value(event_type, payload))
    }

    fn encode_key(
        &self,
        _topic: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Vec<u8>, EncodeError>> + Send {
        let key = match self.away() {
            Some(e) => Err(e),
            None => Ok(aggregate_id.as_bytes().to_vec()),
        };
        std::future::ready(key)
    }
}
