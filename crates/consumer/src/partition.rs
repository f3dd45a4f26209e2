//! One partition's events, one at a time in offset order: decode, apply through the store with retries, or
//! dead-letter; then store the next offset for librdkafka's periodic commit. A stop (shutdown, or the
//! partition revoked) ends the loop between attempts: an event abandoned half-way was not stored, so it is
//! delivered again, and the store decides.

use crate::backoff::{delay, pause};
use crate::config::RetryConfig;
use crate::decode::{DecodeFailure, Decoder};
use crate::dlq::{DeadLetterReason, DeadLetters};
use crate::error::HandlerError;
use crate::event::{Event, Fetched};
use crate::handler::Handler;
use crate::metrics as m;
use crate::stats::ConsumerStats;
use crate::store::{AttemptError, Store, StoreOutcome};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::Instrument;

/// What every partition worker shares.
pub(crate) struct PartitionShared<H: Handler, C: rdkafka::consumer::ConsumerContext + 'static> {
    pub handler: H,
    pub decoder: Decoder,
    pub store: Store,
    pub dlq: DeadLetters,
    pub consumer: Arc<StreamConsumer<C>>,
    pub in_flight: Semaphore,
    pub retry: RetryConfig,
    pub stats: Arc<ConsumerStats>,
}

/// How one event ended.
enum Done {
    /// Its effect or its dead letter is durable: the offset may move past it.
    Finished,
    /// Stopped before that: leave the offset where it is.
    Stopped,
}

/// The worker of one partition, until its channel closes or it is told to stop.
pub(crate) async fn run_partition<H, C>(
    shared: Arc<PartitionShared<H, C>>,
    mut rx: mpsc::Receiver<Fetched>,
    mut stop: watch::Receiver<bool>,
) where
    H: Handler,
    C: rdkafka::consumer::ConsumerContext + 'static,
{
    loop {
        let record = tokio::select! {
            r = rx.recv() => r,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(record) = record else { break };
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = shared.in_flight.acquire() => p.expect("the in-flight semaphore is never closed"),
            _ = stop.wait_for(|s| *s) => break,
        };
        let done = process(&shared, &record, &mut stop).await;
        drop(permit);
        match done {
            Done::Finished => store_offset(&shared.consumer, &record),
            Done::Stopped => break,
        }
    }
}

fn store_offset<C: rdkafka::consumer::ConsumerContext>(consumer: &StreamConsumer<C>, r: &Fetched) {
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(&r.topic, r.partition, Offset::Offset(r.offset + 1))
        .is_ok()
    {
        // Fails when the partition was revoked meanwhile: the new owner gets the event again.
        if let Err(e) = consumer.store_offsets(&tpl) {
            tracing::debug!(topic = %r.topic, partition = r.partition, error = %e, "offset not stored (revoked)");
        }
    }
}

async fn process<H, C>(
    shared: &PartitionShared<H, C>,
    record: &Fetched,
    stop: &mut watch::Receiver<bool>,
) -> Done
where
    H: Handler,
    C: rdkafka::consumer::ConsumerContext + 'static,
{
    let Some(event_id) = record.event_id().map(str::to_string) else {
        let detail = "the record has no `id` header (outboxd's event id): no idempotency key";
        return dead_letter(
            shared,
            record,
            None,
            DeadLetterReason::MissingEventId,
            detail,
            0,
            stop,
        )
        .await;
    };
    let mut stalls = 0;
    let (schema_id, payload) = loop {
        match shared.decoder.decode::<H::Payload>(record.value.as_deref()).await {
            Ok(decoded) => break decoded,
            Err(DecodeFailure::Poison(reason, detail)) => {
                return match seen(shared, &event_id, stop).await {
                    Some(true) => duplicate(shared, record),
                    Some(false) => {
                        dead_letter(shared, record, Some(&event_id), reason, &detail, 0, stop).await
                    }
                    None => Done::Stopped,
                };
            }
            Err(DecodeFailure::RegistryAway(e)) => {
                stalls += 1;
                metrics::counter!(m::STALLS, "cause" => "registry").increment(1);
                tracing::warn!(error = %e, "the schema registry is away: the event waits");
                if !pause(delay(&shared.retry, stalls), stop).await {
                    return Done::Stopped;
                }
            }
        }
    };
    let event = Event {
        payload,
        meta: record.meta(&event_id, schema_id),
    };
    let span = crate::trace::span(&event.meta);
    let (mut attempts, mut stalls) = (0u32, 0u32);
    loop {
        let started = Instant::now();
        let result = shared
            .store
            .apply(&shared.handler, &event)
            .instrument(span.clone())
            .await;
        metrics::histogram!(m::HANDLER_SECONDS).record(started.elapsed().as_secs_f64());
        let wait = match result {
            Ok(StoreOutcome::Applied) => {
                shared.stats.add_applied();
                metrics::counter!(m::EVENTS, "outcome" => "applied", "topic" => record.topic.clone())
                    .increment(1);
                return Done::Finished;
            }
            Ok(StoreOutcome::Duplicate) => return duplicate(shared, record),
            Err(AttemptError::Store(e)) => {
                stalls += 1;
                metrics::counter!(m::STALLS, "cause" => shared.store.kind()).increment(1);
                tracing::warn!(error = %e, "the idempotency store failed: the event waits");
                delay(&shared.retry, stalls)
            }
            Err(AttemptError::Handler(e)) => {
                attempts += 1;
                let give_up = matches!(e, HandlerError::Reject(_)) || attempts >= shared.retry.max_attempts;
                if give_up {
                    let detail = format!("after {attempts} attempt(s): {e}");
                    let reason = DeadLetterReason::HandlerFailed;
                    tracing::warn!(parent: &span, %detail, "handler failed: dead-lettering the event");
                    return dead_letter(shared, record, Some(&event_id), reason, &detail, attempts, stop)
                        .await;
                }
                shared.stats.add_retry();
                metrics::counter!(m::RETRIES).increment(1);
                tracing::debug!(parent: &span, error = %e, attempts, "handler failed: retrying");
                delay(&shared.retry, attempts)
            }
        };
        if !pause(wait, stop).await {
            return Done::Stopped;
        }
    }
}

fn duplicate<H: Handler, C: rdkafka::consumer::ConsumerContext + 'static>(
    shared: &PartitionShared<H, C>,
    record: &Fetched,
) -> Done {
    shared.stats.add_duplicate();
    metrics::counter!(m::DUPLICATES, "store" => shared.store.kind()).increment(1);
    metrics::counter!(m::EVENTS, "outcome" => "duplicate", "topic" => record.topic.clone()).increment(1);
    tracing::debug!(
        topic = %record.topic, partition = record.partition, offset = record.offset,
        "duplicate skipped: the event id is already in the store"
    );
    Done::Finished
}

/// `store.seen`, retried until it answers; `None` when stopped first.
async fn seen<H: Handler, C: rdkafka::consumer::ConsumerContext + 'static>(
    shared: &PartitionShared<H, C>,
    event_id: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<bool> {
    let mut stalls = 0;
    loop {
        match shared.store.seen(event_id).await {
            Ok(b) => return Some(b),
            Err(e) => {
                stalls += 1;
                tracing::warn!(error = ?e, "the idempotency store failed: the event waits");
                if !pause(delay(&shared.retry, stalls), stop).await {
                    return None;
                }
            }
        }
    }
}

/// Writes the dead letter (retried until the broker takes it), then records the id when there is one.
async fn dead_letter<H: Handler, C: rdkafka::consumer::ConsumerContext + 'static>(
    shared: &PartitionShared<H, C>,
    record: &Fetched,
    event_id: Option<&str>,
    reason: DeadLetterReason,
    detail: &str,
    attempts: u32,
    stop: &mut watch::Receiver<bool>,
) -> Done {
    let mut failures = 0;
    while let Err(e) = shared.dlq.send(record, reason, detail, attempts).await {
        failures += 1;
        tracing::warn!(error = %e, "the dead-letter topic did not take the event: retrying");
        if !pause(delay(&shared.retry, failures), stop).await {
            return Done::Stopped;
        }
    }
    shared.stats.add_dead_letter();
    metrics::counter!(m::DEAD_LETTERS, "reason" => reason.as_str()).increment(1);
    metrics::counter!(m::EVENTS, "outcome" => "dead_lettered", "topic" => record.topic.clone()).increment(1);
    if let Some(id) = event_id {
        for _ in 0..5 {
            match shared
                .store
                .record_dead_letter(id, &record.topic, record.partition, record.offset)
                .await
            {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = ?e, "could not record the dead letter in the store"),
            }
        }
    }
    Done::Finished
}
