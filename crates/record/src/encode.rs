//! [`PayloadEncoder`]: what the stage needs from an encoder. [`outboxd_avro::Encoder`] is the one outboxd runs
//! with; the pipeline's unit tests give the stage one of their own, so that no registry needs to run.

use outboxd_avro::{EncodeError, EncodedPayload, Encoder};
use std::future::Future;

/// Encodes payloads and keys for a topic.
pub trait PayloadEncoder: Send + Sync {
    /// Encodes one payload of `event_type` for `topic` (see [`Encoder::encode`]).
    fn encode(
        &self,
        topic: &str,
        event_type: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<EncodedPayload, EncodeError>> + Send;

    /// The key bytes for `aggregate_id` on `topic` (see [`Encoder::encode_key`]).
    fn encode_key(
        &self,
        topic: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Vec<u8>, EncodeError>> + Send;
}

impl PayloadEncoder for Encoder {
    fn encode(
        &self,
        topic: &str,
        event_type: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<EncodedPayload, EncodeError>> + Send {
        Encoder::encode(self, topic, event_type, payload)
    }

    fn encode_key(
        &self,
        topic: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Vec<u8>, EncodeError>> + Send {
        Encoder::encode_key(self, topic, aggregate_id)
    }
}
