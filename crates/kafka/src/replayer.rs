//! Replaying dead letters, the writing part. [`Replayer`] writes what the caller decided for each dead letter
//! the [`DlqReader`] hands out — replayed events to their topics, dead letters appended again — in Kafka
//! transactions that also commit the replay group's offsets (`send_offsets_to_transaction`), so that each dead
//! letter is handled exactly once whatever crashes.
//!
//! Order, as in the pipeline: `init_transactions` (fencing an older replay and aborting its open transaction
//! with its offsets) BEFORE the committed offsets are read.

use crate::dead_letter::{self, DeadLetter};
use crate::dlq_reader::DlqReader;
use crate::producer::{base_client_config, OutRecord, Sent, TxnProducer};
use crate::topics::{TopicKind, TopicState, Topics};
use crate::{ReadyRecord, SinkConfig, SinkError, SinkStats, Written};
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

    /// Produces a replayed event (`record`, built by `outboxd-record` from the dead letter) to its topic, or
    /// refuses it as [`crate::Sink::produce`] does; the caller then requeues the dead letter with that reason.
    pub async fn replay(&mut self, record: &ReadyRecord) -> Result<Written, SinkError> {
        if !self.open {
            return Err(SinkError::Misuse("replay outside a transaction"));
        }
        if !self.topics.is_known(&record.topic)
            && self.topics.ensure(&record.topic, TopicKind::Events).await? == TopicState::Missing
        {
            return Ok(Written::unknown_topic(&record.topic));
        }
        match self.producer.send(&OutRecord::of(record)).await? {
            Sent::Queued => Ok(Written::Queued),
            Sent::TooLarge => Ok(Written::too_large(record.size(), self.config.max_message_bytes)),
        }
    }

    /// Appends a dead letter to the dead-letter topic again (key and value as they were), `dlq_replays`
    /// incremented, with a new reason and detail when given.
    pub async fn requeue(&mut self, dl: &DeadLetter, reason: Option<(&str, &str)>) -> Result<(), SinkError> {
        if !self.open {
            return Err(SinkError::Misuse("requeue outside a transaction"));
        }
        let headers = dead_letter::requeued_headers(dl, reason);
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
