//! The transactional producer: librdkafka settings, blocking transaction calls moved off the async threads,
//! retries of retriable errors with backoff, and a non-blocking `send` that waits while the queue is full.

use crate::error::{FailedCall, Reaction};
use crate::headers::HeaderList;
use crate::{SinkConfig, SinkError, SinkStats};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receives librdkafka's logs, errors and (failed) delivery reports.
#[derive(Debug)]
pub(crate) struct SinkContext {
    stats: Arc<SinkStats>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Err((error, _)) = result else { return };
        match error.rdkafka_error_code() {
            // Purged by an abort (or by dropping the producer): expected, already accounted for.
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => {
                tracing::debug!(%error, "queued record purged");
            }
            _ => {
                // The transaction is now abortable: commit fails and the pipeline restarts from the checkpoint.
                let n = self.stats.delivery_error();
                if n.is_power_of_two() {
                    tracing::warn!(%error, total = n, "a record was not delivered; its transaction will be aborted");
                }
            }
        }
    }
}

/// The context of the sink's helper clients (checkpoint reader, topic admin and lookup): their failures come
/// back as errors of the calls, so librdkafka's own logs stay at debug level (some Kafka-compatible brokers make
/// consumers log protocol complaints at error level on every empty fetch).
#[derive(Debug, Default)]
pub(crate) struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", fac, ?level, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// The outcome of `send` that is not an error of the transaction.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued in the transaction.
    Queued,
    /// librdkafka refused it as larger than `message.max.bytes`.
    TooLarge,
}

/// One record to produce.
#[derive(Debug)]
pub(crate) struct OutRecord<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a HeaderList,
}

impl<'a> OutRecord<'a> {
    /// A ready record, borrowed.
    pub fn of(record: &'a crate::ReadyRecord) -> Self {
        OutRecord {
            topic: &record.topic,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
        }
    }

    /// The librdkafka record `send` hands to the producer: topic, key, value, and the headers copied into a
    /// librdkafka header list.
    fn base_record(&self) -> BaseRecord<'a, [u8], [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
        for (k, v) in self.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(&v[..]),
            });
        }
        let mut rec: BaseRecord<'a, [u8], [u8]> = BaseRecord::to(self.topic).headers(headers);
        if let Some(k) = self.key {
            rec = rec.key(k);
        }
        if let Some(v) = self.value {
            rec = rec.payload(v);
        }
        rec
    }
}

/// The librdkafka record the sink would send for `record` (topic, key, value, headers copied into librdkafka's
/// header list), built exactly as [`crate::Sink::produce`] builds it, but not sent. For measuring the hot path
/// without a broker (`outboxd-bench`'s `hotpath`).
pub fn producer_record(record: &crate::ReadyRecord) -> BaseRecord<'_, [u8], [u8]> {
    OutRecord::of(record).base_record()
}

/// The transactional producer.
pub(crate) struct TxnProducer {
    inner: Arc<ThreadedProducer<SinkContext>>,
    transactional_id: String,
    request_timeout: Duration,
    commit_timeout: Duration,
    transaction_timeout: Duration,
    /// When the open transaction began (None between transactions): tells a broker's timeout abort from a
    /// newer instance's fence.
    began: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for TxnProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnProducer")
            .field("transactional_id", &self.transactional_id)
            .finish_non_exhaustive()
    }
}

/// Settings common to every client: bootstrap servers and the passthrough map (TLS, SASL).
pub(crate) fn base_client_config(config: &SinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers);
    for (k, v) in &config.librdkafka {
        c.set(k, v);
    }
    c
}

/// Producer settings: outboxd's, then the passthrough map, then the ones exactly-once depends on.
pub(crate) fn producer_config(config: &SinkConfig, transactional_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("partitioner", "murmur2_random")
        .set(
            "transaction.timeout.ms",
            config.transaction_timeout_ms.to_string(),
        )
        .set("linger.ms", config.linger_ms.to_string())
        .set("batch.size", config.batch_size.to_string())
        .set("batch.num.messages", config.batch_num_messages.to_string())
        .set("compression.type", &config.compression)
        .set("message.max.bytes", config.max_message_bytes.to_string())
        .set(
            "queue.buffering.max.messages",
            config.queue_max_messages.to_string(),
        )
        .set("queue.buffering.max.kbytes", config.queue_max_kbytes.to_string())
        // Successes need no report: a failed record makes the transaction abortable, which commit reports.
        .set("delivery.report.only.error", "true");
    for (k, v) in &config.librdkafka {
        c.set(k, v);
    }
    c.set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all");
    c
}

/// Retries of a retriable error before giving up as [`SinkError::Unavailable`].
const RETRIES: u32 = 5;

impl TxnProducer {
    /// Creates the producer (no network yet).
    pub fn create(
        config: &SinkConfig,
        transactional_id: &str,
        stats: Arc<SinkStats>,
    ) -> Result<Self, SinkError> {
        let inner: ThreadedProducer<SinkContext> = producer_config(config, transactional_id)
            .create_with_context(SinkContext { stats })
            .map_err(|e| SinkError::Config(format!("cannot create the Kafka producer: {e}")))?;
        Ok(TxnProducer {
            inner: Arc::new(inner),
            transactional_id: transactional_id.to_string(),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            commit_timeout: Duration::from_millis(
                config.transaction_timeout_ms.max(config.request_timeout_ms),
            ),
            transaction_timeout: Duration::from_millis(config.transaction_timeout_ms),
            began: std::sync::Mutex::new(None),
        })
    }

    fn failure(&self, op: &'static str) -> FailedCall<'_> {
        let began = *self
            .began
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        FailedCall {
            op,
            transactional_id: &self.transactional_id,
            fatal: self.inner.client().fatal_error(),
            txn_age: began.map(|t| (t.elapsed(), self.transaction_timeout)),
        }
    }

    fn set_began(&self, began: Option<Instant>) {
        *self
            .began
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = began;
    }

    /// Runs a blocking transactional call on a blocking thread, retrying retriable errors with backoff.
    async fn call<F>(&self, op: &'static str, timeout: Duration, f: F) -> Result<(), SinkError>
    where
        F: Fn(&ThreadedProducer<SinkContext>, Duration) -> KafkaResult<()> + Clone + Send + 'static,
    {
        let mut backoff = Duration::from_millis(100);
        for attempt in 0..=RETRIES {
            let producer = Arc::clone(&self.inner);
            let f = f.clone();
            let result = tokio::task::spawn_blocking(move || f(&producer, timeout))
                .await
                .unwrap_or(Err(KafkaError::Canceled));
            let err = match result {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            match self.failure(op).classify(err) {
                Reaction::Fail(e) => return Err(e),
                Reaction::Retry(source) if attempt == RETRIES => {
                    return Err(SinkError::Unavailable { op, source })
                }
                Reaction::Retry(source) => {
                    tracing::warn!(op, %source, ?backoff, "retriable Kafka error; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        Err(SinkError::Misuse("retry loop exhausted"))
    }

    /// `init_transactions`: fences any older producer with this transactional id and aborts its open
    /// transaction.
    pub async fn init(&self) -> Result<(), SinkError> {
        self.call("init_transactions", self.request_timeout, |p, t| {
            p.init_transactions(t)
        })
        .await
    }

    /// `begin_transaction` (local, non-blocking).
    pub fn begin(&self) -> Result<(), SinkError> {
        self.inner
            .begin_transaction()
            .map_err(|e| match self.failure("begin_transaction").classify(e) {
                Reaction::Fail(e) => e,
                Reaction::Retry(source) => SinkError::Aborted {
                    op: "begin_transaction",
                    source,
                },
            })?;
        self.set_began(Some(Instant::now()));
        Ok(())
    }

    /// `commit_transaction`: flushes every queued record, then commits. Retried when retriable.
    pub async fn commit(&self) -> Result<(), SinkError> {
        // rdkafka's commit flushes by polling in 100 ms slices, which with success reports disabled sleeps a
        // whole slice per commit: wait for the queue to drain here first, so that its flush finds it empty.
        self.drained().await;
        self.call("commit_transaction", self.commit_timeout, |p, t| {
            p.commit_transaction(t)
        })
        .await?;
        self.set_began(None);
        Ok(())
    }

    /// Waits (without blocking a thread) until librdkafka holds no queued or in-flight record, or the
    /// commit timeout passes (the flush inside commit then deals with the rest).
    async fn drained(&self) {
        let deadline = Instant::now() + self.commit_timeout;
        let mut pause = Duration::from_micros(100);
        while self.inner.in_flight_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// Waits until every queued record reached the broker (still uncommitted).
    pub async fn flush(&self) -> Result<(), SinkError> {
        self.drained().await;
        self.call("flush", self.commit_timeout, |p, t| p.flush(t)).await
    }

    /// `send_offsets_to_transaction`: the consumer group's offsets become part of the open transaction
    /// (committed with it, or dropped with an abort). Retried when retriable.
    pub async fn send_offsets(
        &self,
        offsets: TopicPartitionList,
        group: Arc<ConsumerGroupMetadata>,
    ) -> Result<(), SinkError> {
        self.call(
            "send_offsets_to_transaction",
            self.request_timeout,
            move |p, t| p.send_offsets_to_transaction(&offsets, &group, t),
        )
        .await
    }

    /// `abort_transaction`: drops queued records and aborts.
    pub async fn abort(&self) -> Result<(), SinkError> {
        self.call("abort_transaction", self.request_timeout, |p, t| {
            p.abort_transaction(t)
        })
        .await?;
        self.set_began(None);
        Ok(())
    }

    /// One `abort_transaction` attempt within `timeout`, no retries: after a failure the next
    /// `init_transactions` aborts the transaction anyway, so waiting out a retry budget would only delay
    /// the restart while the broker is away.
    pub async fn abort_once(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || producer.abort_transaction(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled));
        result.map_err(|e| match self.failure("abort_transaction").classify(e) {
            Reaction::Fail(e) => e,
            Reaction::Retry(source) => SinkError::Unavailable {
                op: "abort_transaction",
                source,
            },
        })
    }

    /// Queues one record in the open transaction, waiting (without blocking the thread) while librdkafka's
    /// queue is full. Gives up as aborted after the transaction timeout.
    pub async fn send(&self, record: &OutRecord<'_>) -> Result<Sent, SinkError> {
        let mut rec = record.base_record();
        let deadline = Instant::now() + self.commit_timeout;
        let mut pause = Duration::from_micros(200);
        loop {
            match self.inner.send(rec) {
                Ok(()) => return Ok(Sent::Queued),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if Instant::now() >= deadline {
                        return Err(SinkError::Aborted {
                            op: "produce",
                            source: KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                        });
                    }
                    rec = back;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Ok(Sent::TooLarge)
                }
                Err((e, _)) => {
                    return Err(match self.failure("produce").classify(e) {
                        Reaction::Fail(e) => e,
                        Reaction::Retry(source) => SinkError::Aborted {
                            op: "produce",
                            source,
                        },
                    })
                }
            }
        }
    }
}
