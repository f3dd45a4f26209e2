//! Replaying dead letters, the writing part. [`Replayer`] writes what the caller decided for each dead letter
//! the [`DlqReader`] hands out — replayed events to their topics, dead letters appended again — in Kafka
//! transactions that also commit the replay group's offsets (`send_offsets_to_transaction`), so that each dead
//! letter is handled exactly once whatever crashes.
//!
//! Order, as in the pipeline: `init_transactions` (fencing an older replay and aborting its open transaction
//! with its offsets) BEFORE the committed offsets are read.

use crate::dlq_reader::DlqReader;
use crate::producer::{base_client_config, OutRecord, Sent, TxnProducer};
use crate::record::record_size;
use crate::replay::{self, DeadLetter, Replayable};
use crate::topics::{TopicKind, TopicState, Topics};
use crate::{DlqReason, EncodedRecord, SinkConfig, SinkError, SinkStats};
use rdkafka::consumer::ConsumerGroupMetadata;
use std::sync::Arc;
use std::time::Duration;

/// Who replays: the consumer group whose offsets record the progress, and the producer's transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayIdentity {
    /// The consumer group (`<pipeline id>-dlq-replay`).
    pub group_id: String,
    /// The transactional id (`<pipeline transactional id>-dlq-replay`).
    pub transactional_id: String,
}

/// What became of a dead letter handed to [`Replayer::replay`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replayed {
    /// Produced to its topic in the open transaction.
    Produced,
    /// The sink's own rules refused it (too large, topic missing, bad headers): appended to the dead-letter
    /// topic again with this reason.
    Requeued {
        /// The new reason.
        reason: DlqReason,
        /// What was wrong.
        detail: String,
    },
}

/// Writes replayed events and requeued dead letters in Kafka transactions that also commit the replay
/// group's offsets. Drive it per chunk: [`Replayer::begin`], then [`Replayer::replay`] or
/// [`Replayer::requeue`] for every dead letter of [`Replayer::next_chunk`], then [`Replayer::commit`].
pub struct Replayer {
    config: SinkConfig,
    producer: TxnProducer,
    topics: Topics,
    reader: DlqReader,
    group: Arc<ConsumerGroupMetadata>,
    open: bool,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("producer", &self.producer)
            .field("reader", &self.reader)
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// `init_transactions` with the replay's transactional id (fencing an older replay, aborting its open
    /// transaction and the offsets in it), THEN opens the reader at the group's committed offsets.
    pub async fn start(config: SinkConfig, identity: &ReplayIdentity) -> Result<Replayer, SinkError> {
        config.validate().map_err(SinkError::Config)?;
        let producer = TxnProducer::create(
            &config,
            &identity.transactional_id,
            Arc::new(SinkStats::default()),
        )?;
        producer.init().await?;
        let reader = DlqReader::open(&config, &identity.group_id).await?;
        let group = reader.group_metadata().ok_or(SinkError::Misuse(
            "the dead-letter consumer has no group metadata",
        ))?;
        let topics = Topics::new(
            &base_client_config(&config),
            config.topics.clone(),
            Duration::from_millis(config.request_timeout_ms),
        )?;
        Ok(Replayer {
            config,
            producer,
            topics,
            reader,
            group: Arc::new(group),
            open: false,
        })
    }

    /// The reader (how much is left, whether it is done).
    pub fn reader(&self) -> &DlqReader {
        &self.reader
    }

    /// The next dead letters to handle in the open transaction (see [`DlqReader::next_chunk`]).
    pub async fn next_chunk(&mut self, max: usize) -> Result<Vec<DeadLetter>, SinkError> {
        self.reader.next_chunk(max).await
    }

    /// True while a Kafka transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.open
    }

    /// Begins a Kafka transaction unless one is open.
    pub fn begin(&mut self) -> Result<(), SinkError> {
        if !self.open {
            self.producer.begin()?;
            self.open = true;
        }
        Ok(())
    }

    /// Produces a dead letter that now fits its schema to its topic (`record` from the encoder), with the
    /// pipeline's headers plus `dlq_replayed_from`; requeues it when the sink's rules refuse it.
    pub async fn replay(
        &mut self,
        dl: &DeadLetter,
        replayable: &Replayable,
        record: EncodedRecord,
    ) -> Result<Replayed, SinkError> {
        if !self.open {
            return Err(SinkError::Misuse("replay outside a transaction"));
        }
        let headers = match replay::replayed_headers(dl, replayable, record.schema) {
            Ok(h) => h,
            Err(detail) => return self.refuse(dl, DlqReason::InvalidHeaders, detail).await,
        };
        if !self.topics.is_known(&record.topic)
            && self.topics.ensure(&record.topic, TopicKind::Events).await? == TopicState::Missing
        {
            let detail = format!(
                "topic {:?} does not exist and kafka.topics.create is false",
                record.topic
            );
            return self.refuse(dl, DlqReason::UnknownTopic, detail).await;
        }
        let size = record_size(record.key.as_deref(), Some(&record.value), &headers);
        let too_large = format!(
            "the record would take {size} bytes; kafka.max_message_bytes is {}",
            self.config.max_message_bytes
        );
        if size > self.config.max_message_bytes {
            return self.refuse(dl, DlqReason::TooLarge, too_large).await;
        }
        let out = OutRecord {
            topic: &record.topic,
            key: record.key.as_deref(),
            value: Some(&record.value),
            headers: &headers,
        };
        match self.producer.send(&out).await? {
            Sent::Queued => Ok(Replayed::Produced),
            Sent::TooLarge => self.refuse(dl, DlqReason::TooLarge, too_large).await,
        }
    }

    async fn refuse(
        &mut self,
        dl: &DeadLetter,
        reason: DlqReason,
        detail: String,
    ) -> Result<Replayed, SinkError> {
        self.requeue(dl, Some((reason.code(), &detail))).await?;
        Ok(Replayed::Requeued { reason, detail })
    }

    /// Appends a dead letter to the dead-letter topic again (key and value as they were), `dlq_replays`
    /// incremented, with a new reason and detail when given.
    pub async fn requeue(&mut self, dl: &DeadLetter, reason: Option<(&str, &str)>) -> Result<(), SinkError> {
        if !self.open {
            return Err(SinkError::Misuse("requeue outside a transaction"));
        }
        let headers = replay::requeued_headers(dl, reason);
        let out = OutRecord {
            topic: &self.config.dlq_topic,
            key: dl.key.as_deref(),
            value: dl.value.as_deref(),
            headers: &headers,
        };
        match self.producer.send(&out).await? {
            Sent::Queued => Ok(()),
            Sent::TooLarge => Err(SinkError::Config(format!(
                "the dead letter at {} no longer fits kafka.max_message_bytes ({}) with its replay headers",
                dl.position(),
                self.config.max_message_bytes
            ))),
        }
    }

    /// Adds the group's offsets (everything handed out so far) to the open transaction and waits until every
    /// record reached the broker, uncommitted: what a crash right before the commit leaves behind.
    pub async fn prepare_commit(&mut self) -> Result<(), SinkError> {
        if !self.open {
            return Ok(());
        }
        self.producer
            .send_offsets(self.reader.offsets()?, Arc::clone(&self.group))
            .await?;
        self.producer.flush().await
    }

    /// Commits the open transaction with the group's offsets: its replayed events, requeued dead letters and
    /// the progress become visible together, or not at all. Nothing to do when no transaction is open.
    pub async fn commit(&mut self) -> Result<(), SinkError> {
        if !self.open {
            return Ok(());
        }
        self.prepare_commit().await?;
        self.producer.commit().await?;
        self.open = false;
        Ok(())
    }

    /// Aborts the open transaction, if any: nothing of it is visible and the offsets stay where they were.
    pub async fn abort(&mut self) -> Result<(), SinkError> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        self.producer.abort().await
    }
}
