//! One outbox event through the checks, the router, the Avro encoder and into the sink. Every event ends up
//! on its topic or on the dead-letter topic; a registry that cannot answer pauses the event (retried with
//! backoff, nothing lost, nothing dead-lettered).

use super::error::{Failure, PipelineError};
use super::shutdown::Shutdown;
use outboxd_avro::{EncodeError, Encoder};
use outboxd_core::OutboxEvent;
use outboxd_kafka::{Delivery, DlqReason, EncodedRecord, SchemaRef, Sink};
use std::future::Future;
use std::time::Duration;

/// What became of one event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Produced or dead-lettered in the open transaction.
    Done(Delivery),
    /// Shutdown was requested while the event waited for the registry: nothing was produced for it.
    Interrupted,
}

/// What an event needs besides itself.
#[derive(Debug)]
pub(crate) struct EventContext<'a, 's> {
    pub sink: &'a mut Sink,
    pub encoder: &'a Encoder,
    pub max_backoff: Duration,
    pub shutdown: &'a mut Shutdown<'s>,
}

enum Encoded<T> {
    Ok(T),
    Rejected(&'static str, String),
    Interrupted,
}

impl EventContext<'_, '_> {
    /// Checks, routes, encodes and produces one event.
    pub(crate) async fn handle(&mut self, event: &OutboxEvent) -> Result<Handled, Failure> {
        let routed = self.sink.route(event);
        let intended = routed.as_ref().ok().map(String::as_str);
        if let Some(defect) = &event.defect {
            return self
                .dead_letter(event, DlqReason::DecodeDefect, defect, intended)
                .await;
        }
        let missing = event.missing_required();
        if !missing.is_empty() {
            let detail = format!("missing or empty: {}", missing.join(", "));
            return self
                .dead_letter(event, DlqReason::MissingFields, &detail, intended)
                .await;
        }
        let topic = match routed {
            Ok(t) => t,
            Err(r) => return self.dead_letter(event, r.reason, &r.detail, None).await,
        };
        let (Some(payload), Some(event_type), Some(aggregate_id)) = (
            event.payload.as_deref(),
            event.event_type.as_deref(),
            event.aggregate_id.as_deref(),
        ) else {
            let detail = "the payload is null";
            return self
                .dead_letter(event, DlqReason::MissingFields, detail, Some(&topic))
                .await;
        };
        let encoder = self.encoder;
        let value = match self
            .retrying(|| encoder.encode(&topic, event_type, payload))
            .await?
        {
            Encoded::Ok(v) => v,
            Encoded::Rejected(reason, detail) => {
                return self
                    .dead_letter(event, DlqReason::Encoder(reason), &detail, Some(&topic))
                    .await
            }
            Encoded::Interrupted => return Ok(Handled::Interrupted),
        };
        let key = match self.retrying(|| encoder.encode_key(&topic, aggregate_id)).await? {
            Encoded::Ok(k) => k,
            Encoded::Rejected(reason, detail) => {
                return self
                    .dead_letter(event, DlqReason::Encoder(reason), &detail, Some(&topic))
                    .await
            }
            Encoded::Interrupted => return Ok(Handled::Interrupted),
        };
        let record = EncodedRecord {
            topic,
            key: Some(key),
            value: value.bytes,
            schema: Some(SchemaRef {
                id: value.schema_id,
                version: value.version,
            }),
        };
        Ok(Handled::Done(self.sink.produce(event, record).await?))
    }

    async fn dead_letter(
        &mut self,
        event: &OutboxEvent,
        reason: DlqReason,
        detail: &str,
        intended: Option<&str>,
    ) -> Result<Handled, Failure> {
        if matches!(reason, DlqReason::Encoder(r) if r == outboxd_avro::reason::SCHEMA_MISMATCH) {
            let event_type = event.event_type.clone().unwrap_or_default();
            metrics::counter!(crate::metrics::SCHEMA_FAILURES, "event_type" => event_type).increment(1);
        }
        Ok(Handled::Done(
            self.sink.dead_letter(event, reason, detail, intended).await?,
        ))
    }

    /// Runs an encoder call, pausing and retrying while the registry is away (until shutdown).
    async fn retrying<T, F, Fut>(&mut self, mut call: F) -> Result<Encoded<T>, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, EncodeError>>,
    {
        let mut pause = Duration::from_millis(100);
        loop {
            match call().await {
                Ok(v) => return Ok(Encoded::Ok(v)),
                Err(EncodeError::Rejected(r)) => return Ok(Encoded::Rejected(r.reason, r.detail)),
                Err(EncodeError::Fatal(e)) => return Err(Failure::Halt(PipelineError::Avro(e))),
                Err(EncodeError::Retriable(e)) => {
                    metrics::counter!(crate::metrics::REGISTRY_ERRORS).increment(1);
                    tracing::warn!(error = %e, ?pause, "schema registry unavailable; retrying the same event");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.shutdown.wait() => return Ok(Encoded::Interrupted),
                    }
                    pause = (pause * 2).min(self.max_backoff);
                }
            }
        }
    }
}
