//! The life of one outbox event in the pipeline: the stage decides (outboxd-record's [`Stage::prepare`]: a
//! ready record or a rejection), the sink writes the record, or the dead letter when the stage rejected the
//! event or the sink refused its record. Every event ends up on its topic or on the dead-letter topic; a
//! registry that cannot answer pauses the event (retried with backoff until shutdown, nothing lost, nothing
//! dead-lettered).

use super::error::AttemptFailure;
use super::ports::EventSink;
use super::shutdown::Shutdown;
use crate::registry_wait::{patiently, Patience, Waited};
use outboxd_core::OutboxEvent;
use outboxd_kafka::Written;
use outboxd_record::{EventRejection, PayloadEncoder, Prepared, Stage};

/// What became of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Written to its topic in the open transaction.
    Produced,
    /// Written to the dead-letter topic in the open transaction.
    DeadLettered,
    /// Shutdown was requested while the event waited for the registry: nothing was written for it.
    Interrupted,
}

/// What an event needs besides itself.
#[derive(Debug)]
pub(crate) struct EventContext<'a, 's, K, E> {
    pub sink: &'a mut K,
    pub stage: &'a Stage<E>,
    pub patience: Patience,
    pub shutdown: &'a mut Shutdown<'s>,
    /// The commit time of the event's Postgres transaction (µs since the epoch).
    pub commit_time_us: i64,
}

impl<K: EventSink, E: PayloadEncoder> EventContext<'_, '_, K, E> {
    /// Decides and writes one event.
    pub(crate) async fn handle(&mut self, event: &OutboxEvent) -> Result<Handled, AttemptFailure> {
        self.handle_decided(event, None).await
    }

    /// Writes one event, with the stage's decision when it was taken ahead (during a commit; see `ahead.rs`),
    /// else decided now.
    pub(crate) async fn handle_decided(
        &mut self,
        event: &OutboxEvent,
        decided: Option<Prepared>,
    ) -> Result<Handled, AttemptFailure> {
        let (stage, time) = (self.stage, self.commit_time_us);
        let prepared = match decided {
            Some(p) => p,
            None => {
                match patiently(self.patience, self.shutdown.wait(), || stage.prepare(event, time)).await? {
                    Waited::Done(p) => p,
                    Waited::Interrupted => return Ok(Handled::Interrupted),
                }
            }
        };
        let rejection = match prepared {
            Prepared::Ready(record) => match self.sink.produce(&record).await? {
                Written::Queued => return Ok(Handled::Produced),
                Written::Refused { reason, detail } => EventRejection {
                    reason,
                    detail,
                    intended_topic: Some(record.topic.to_string()),
                },
            },
            Prepared::Rejected(r) => r,
        };
        self.dead_letter(event, &rejection).await
    }

    async fn dead_letter(
        &mut self,
        event: &OutboxEvent,
        rejection: &EventRejection,
    ) -> Result<Handled, AttemptFailure> {
        tracing::warn!(
            reason = rejection.reason.code(),
            detail = rejection.detail,
            id = ?event.id,
            lsn = %event.lsn,
            intended_topic = rejection.intended_topic,
            "event sent to the dead-letter topic"
        );
        if rejection.reason.code() == outboxd_avro::reason::SCHEMA_MISMATCH {
            let event_type = event.event_type.clone().unwrap_or_default();
            metrics::counter!(crate::metrics::SCHEMA_FAILURES, "event_type" => event_type).increment(1);
        }
        let record = self.stage.dead_letter(event, self.commit_time_us, rejection);
        self.sink.dead_letter(&record, rejection.reason).await?;
        Ok(Handled::DeadLettered)
    }
}
