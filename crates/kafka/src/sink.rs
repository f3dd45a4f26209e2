//! [`Sink`]: one transactional producer driven through whole Postgres transactions, with the checkpoint
//! record and dead letters in the same Kafka transaction.

use crate::batch::Batch;
use crate::checkpoint::{self, Checkpoint};
use crate::headers::{self, HeaderList};
use crate::producer::{base_client_config, OutRecord, Sent, TxnProducer};
use crate::topics::{TopicKind, TopicState, Topics};
use crate::{DlqReason, ReadyRecord, SinkConfig, SinkError, SinkStats, Written};
use outboxd_core::{BackfillProgress, Commit, Lsn, SlotOrigin, TxBegin};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Who the sink writes for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkIdentity {
    /// Names this pipeline's checkpoint (the record key in the checkpoint topic).
    pub pipeline_id: String,
    /// The producer's stable `transactional.id`.
    pub transactional_id: String,
}

/// A committed Kafka transaction: its checkpoint names the end LSN that may now be confirmed to Postgres.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The checkpoint record committed with it.
    pub checkpoint: Checkpoint,
    /// How long `commit_transaction` took.
    pub duration: Duration,
}

/// The transactional sink. Drive it per Postgres transaction: [`Sink::begin`], then [`Sink::produce`] /
/// [`Sink::dead_letter`] per record, then [`Sink::end`]; between Postgres transactions, [`Sink::commit`] when
/// [`Sink::commit_due`] (or at [`Sink::commit_deadline`]). After any error, call [`Sink::abort`] (best effort)
/// and drop the sink: a restart builds a new one, which reads the checkpoint again.
pub struct Sink {
    config: SinkConfig,
    identity: SinkIdentity,
    producer: TxnProducer,
    topics: Topics,
    stats: Arc<SinkStats>,
    checkpoint: Option<Checkpoint>,
    /// What the next checkpoint carries besides the LSNs (from the last one, updated by the pipeline).
    origin: Option<SlotOrigin>,
    backfill: Option<BackfillProgress>,
    batch: Batch,
    kafka_txn_open: bool,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("identity", &self.identity)
            .field("checkpoint", &self.checkpoint)
            .field("kafka_txn_open", &self.kafka_txn_open)
            .finish_non_exhaustive()
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Sink {
    /// Starts the sink, in the order exactly-once needs: create the base topics, `init_transactions` (fencing
    /// any zombie with our transactional id), THEN read our latest checkpoint with `read_committed`.
    pub async fn start(
        config: SinkConfig,
        identity: SinkIdentity,
        stats: Arc<SinkStats>,
    ) -> Result<Sink, SinkError> {
        config.validate().map_err(SinkError::Config)?;
        let client = base_client_config(&config);
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let mut topics = Topics::new(&client, config.topics.clone(), timeout)?;
        let mut base = vec![(config.checkpoint_topic.clone(), TopicKind::Checkpoint)];
        base.push((config.dlq_topic.clone(), TopicKind::Events));
        if let (crate::RouteMode::Fixed, Some(t)) = (config.routing.mode, &config.routing.fixed_topic) {
            base.push((t.clone(), TopicKind::Events));
        }
        for (topic, kind) in base {
            if topics.ensure(&topic, kind).await? == TopicState::Missing {
                return Err(SinkError::Config(format!(
                    "topic {topic:?} does not exist and kafka.topics.create is false: create it first"
                )));
            }
        }
        let producer = TxnProducer::create(&config, &identity.transactional_id, Arc::clone(&stats))?;
        producer.init().await?;
        let request = checkpoint::ReadRequest {
            client,
            topic: config.checkpoint_topic.clone(),
            pipeline_id: identity.pipeline_id.clone(),
            timeout: Duration::from_millis(config.transaction_timeout_ms + config.request_timeout_ms),
        };
        let checkpoint = tokio::task::spawn_blocking(move || checkpoint::read_latest(&request))
            .await
            .map_err(|_| SinkError::Misuse("checkpoint reader panicked"))??;
        if let Some(c) = &checkpoint {
            stats.checkpoint_read(c.end_lsn);
        }
        tracing::info!(
            pipeline_id = %identity.pipeline_id,
            transactional_id = %identity.transactional_id,
            checkpoint = ?checkpoint.as_ref().map(|c| c.end_lsn.to_string()),
            "Kafka sink ready"
        );
        Ok(Sink {
            config,
            identity,
            producer,
            topics,
            stats,
            origin: checkpoint.as_ref().and_then(|c| c.origin.clone()),
            backfill: checkpoint.as_ref().and_then(|c| c.backfill.clone()),
            checkpoint,
            batch: Batch::default(),
            kafka_txn_open: false,
        })
    }

    /// The latest committed checkpoint (read at start, then each one written since).
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// The slot's origin: as the next checkpoint will carry it (set by [`Sink::set_origin`] or read).
    pub fn origin(&self) -> Option<&SlotOrigin> {
        self.origin.as_ref()
    }

    /// The backfill's progress, as the next checkpoint will carry it.
    pub fn backfill(&self) -> Option<&BackfillProgress> {
        self.backfill.as_ref()
    }

    /// Records the slot's origin in every checkpoint from the next commit on.
    pub fn set_origin(&mut self, origin: SlotOrigin) {
        self.origin = Some(origin);
    }

    /// Records the backfill's progress in the next commit: call it with the rows of the open transaction
    /// counted, so that the progress commits with them (or aborts with them).
    pub fn set_backfill(&mut self, progress: BackfillProgress) {
        self.backfill = Some(progress);
    }

    /// `C`: every Postgres transaction whose end LSN is at or below it is already in Kafka and must be skipped.
    pub fn resume_after(&self) -> Lsn {
        self.checkpoint.as_ref().map_or(Lsn::ZERO, |c| c.end_lsn)
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    /// True while a Postgres transaction is being streamed into the open Kafka transaction.
    pub fn in_pg_transaction(&self) -> bool {
        self.batch.pg_open()
    }

    /// True when the open Kafka transaction can be committed now (only whole Postgres transactions in it).
    pub fn committable(&self) -> bool {
        self.batch.committable()
    }

    /// True when the open Kafka transaction should be committed now: a size limit is reached, or the linger
    /// time is over and no more received events are `waiting` (those go into this transaction first: they
    /// are here already, and a commit before them would only add a commit's time to their latency).
    pub fn commit_due(&self, waiting: bool) -> bool {
        match waiting {
            true => self.batch.full(&self.config.batch),
            false => self.batch.due(&self.config.batch, Instant::now()),
        }
    }

    /// When the linger time of a committable transaction runs out.
    pub fn commit_deadline(&self) -> Option<Instant> {
        self.batch.deadline(&self.config.batch)
    }

    /// A Postgres transaction starts: begins a Kafka transaction unless one is open.
    pub fn begin(&mut self, begin: &TxBegin) -> Result<(), SinkError> {
        if self.batch.begin_pg(*begin, Instant::now())? {
            self.producer.begin()?;
            self.kafka_txn_open = true;
        }
        Ok(())
    }

    /// Produces a record into the open transaction, or refuses it when only the broker side can tell that it
    /// cannot go (its topic is missing and creation is disabled; the producer refuses its size): the caller
    /// then dead-letters the event with that reason.
    pub async fn produce(&mut self, record: &ReadyRecord) -> Result<Written, SinkError> {
        if !self.batch.pg_open() {
            return Err(SinkError::Misuse("produce outside a Postgres transaction"));
        }
        if !self.topics.is_known(&record.topic)
            && self.topics.ensure(&record.topic, TopicKind::Events).await? == TopicState::Missing
        {
            return Ok(Written::unknown_topic(&record.topic));
        }
        let size = record.size();
        match self.producer.send(&OutRecord::of(record)).await? {
            Sent::Queued => {
                self.batch.add_event(size)?;
                Ok(Written::Queued)
            }
            Sent::TooLarge => Ok(Written::too_large(size, self.config.max_message_bytes)),
        }
    }

    /// Writes a dead letter (built by `outboxd-record`, for this reason) into the open transaction.
    pub async fn dead_letter(&mut self, record: &ReadyRecord, reason: DlqReason) -> Result<(), SinkError> {
        if !self.batch.pg_open() {
            return Err(SinkError::Misuse("dead letter outside a Postgres transaction"));
        }
        let size = record.size();
        match self.producer.send(&OutRecord::of(record)).await? {
            Sent::Queued => self.batch.add_dead_letter(reason.code(), size),
            Sent::TooLarge => Err(SinkError::Config(format!(
                "a dead letter of {size} bytes was refused as too large: kafka.max_message_bytes ({}) exceeds \
                 the producer's message.max.bytes",
                self.config.max_message_bytes
            ))),
        }
    }

    /// The Postgres transaction ends (all its events were handed over).
    pub fn end(&mut self, commit: &Commit) -> Result<(), SinkError> {
        self.batch.end_pg(*commit)
    }

    /// Writes the checkpoint record and commits the Kafka transaction. Returns what was committed; only
    /// then may its end LSN be confirmed to Postgres. `Ok(None)` when no transaction is open.
    pub async fn commit(&mut self) -> Result<Option<Committed>, SinkError> {
        if !self.kafka_txn_open {
            return Ok(None);
        }
        let closed = self.batch.close()?;
        let checkpoint = Checkpoint {
            pipeline_id: self.identity.pipeline_id.clone(),
            commit_lsn: closed.last_commit.commit_lsn,
            end_lsn: closed.last_commit.end_lsn,
            events: closed.counts.events + closed.counts.dead_letters.values().sum::<u64>(),
            txns: closed.counts.pg_txns,
            time: headers::rfc3339_micros(now_micros()),
            origin: self.origin.clone(),
            backfill: self.backfill.clone(),
        };
        let value = checkpoint.to_json();
        let headers = HeaderList::new();
        let out = OutRecord {
            topic: &self.config.checkpoint_topic,
            key: Some(self.identity.pipeline_id.as_bytes()),
            value: Some(&value),
            headers: &headers,
        };
        if self.producer.send(&out).await? == Sent::TooLarge {
            return Err(SinkError::Misuse("checkpoint record refused as too large"));
        }
        let started = Instant::now();
        self.producer.commit().await?;
        let duration = started.elapsed();
        self.kafka_txn_open = false;
        let counts = crate::stats::CommittedCounts {
            events: closed.counts.events,
            bytes: closed.counts.event_bytes,
            pg_txns: closed.counts.pg_txns,
            end_lsn: checkpoint.end_lsn,
            duration,
        };
        self.stats.committed(counts, &closed.counts.dead_letters);
        tracing::debug!(end_lsn = %checkpoint.end_lsn, events = checkpoint.events, txns = checkpoint.txns, ?duration, "committed");
        self.checkpoint = Some(checkpoint.clone());
        Ok(Some(Committed { checkpoint, duration }))
    }

    /// Waits until every record queued in the open transaction reached the broker, uncommitted (for fault
    /// injection: a crash "just before commit" then leaves them all for the next `init_transactions` to abort).
    pub async fn flush(&self) -> Result<(), SinkError> {
        self.producer.flush().await
    }

    /// Aborts the open Kafka transaction, if any: nothing of it becomes visible to `read_committed` readers.
    pub async fn abort(&mut self) -> Result<(), SinkError> {
        if self.mark_aborted() {
            self.producer.abort().await
        } else {
            Ok(())
        }
    }

    /// After a failure, before the sink is dropped: one abort attempt within `timeout`, no retries (the next
    /// instance's `init_transactions` aborts whatever is left open).
    pub async fn abort_best_effort(&mut self, timeout: Duration) -> Result<(), SinkError> {
        if self.mark_aborted() {
            self.producer.abort_once(timeout).await
        } else {
            Ok(())
        }
    }

    /// Forgets the open batch; true when a Kafka transaction was open (and is now counted as aborted).
    fn mark_aborted(&mut self) -> bool {
        self.batch.reset();
        // What the aborted transaction would have recorded goes with it.
        self.origin = self
            .checkpoint
            .as_ref()
            .and_then(|c| c.origin.clone())
            .or(self.origin.take());
        self.backfill = self.checkpoint.as_ref().and_then(|c| c.backfill.clone());
        if !self.kafka_txn_open {
            return false;
        }
        self.kafka_txn_open = false;
        self.stats.aborted();
        true
    }
}
