//! Topics: created when missing (the broker is not expected to auto-create), remembered once known.

use crate::config::TopicsConfig;
use crate::producer::QuietContext;
use crate::SinkError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// `segment.bytes` of a checkpoint topic outboxd creates (16 MiB, a few minutes of checkpoints at full speed):
/// only closed segments are compacted, and the broker's default (1 GiB) would keep hours of them.
const CHECKPOINT_SEGMENT_BYTES: &str = "16777216";

/// What a topic is for, which decides how it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TopicKind {
    /// An event or dead-letter topic.
    Events,
    /// The compacted checkpoint topic.
    Checkpoint,
}

/// The answer for one topic.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TopicState {
    /// It exists (or was just created): produce to it.
    Ready,
    /// It does not exist and creation is disabled: the event goes to the dead-letter topic.
    Missing,
}

/// Creates and remembers topics.
pub(crate) struct Topics {
    admin: AdminClient<QuietContext>,
    lookup: Arc<BaseConsumer<QuietContext>>,
    config: TopicsConfig,
    timeout: Duration,
    known: HashSet<String>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

fn hint(code: RDKafkaErrorCode) -> Option<&'static str> {
    Some(match code {
        RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed => {
            "Grant CREATE on the topic (or cluster) to outboxd's principal, or create the topic beforehand"
        }
        RDKafkaErrorCode::PolicyViolation => {
            "The broker's create-topic policy refused it: create the topic by hand"
        }
        RDKafkaErrorCode::InvalidReplicationFactor => {
            "kafka.topics.replication_factor exceeds the number of brokers, or the broker does not accept -1 \
             (its default; Kafka 2.4+): set an explicit factor"
        }
        RDKafkaErrorCode::InvalidPartitions => "kafka.topics.partitions must be at least 1",
        RDKafkaErrorCode::InvalidConfig => "Check the settings under kafka.topics.config",
        RDKafkaErrorCode::InvalidTopic => "The name is not a legal Kafka topic name",
        _ => return None,
    })
}

impl Topics {
    /// Admin and metadata clients from the producer's client settings.
    pub fn new(client: &ClientConfig, config: TopicsConfig, timeout: Duration) -> Result<Topics, SinkError> {
        let admin = client
            .create_with_context(QuietContext)
            .map_err(|e| SinkError::Config(format!("cannot create the Kafka admin client: {e}")))?;
        let lookup = Arc::new(
            client
                .clone()
                .set("group.id", "outboxd-topic-lookup")
                .create_with_context(QuietContext)
                .map_err(|e| SinkError::Config(format!("cannot create the Kafka metadata client: {e}")))?,
        );
        Ok(Topics {
            admin,
            lookup,
            config,
            timeout,
            known: HashSet::new(),
        })
    }

    /// True when the topic is known to exist.
    pub fn is_known(&self, topic: &str) -> bool {
        self.known.contains(topic)
    }

    /// Makes sure the topic exists: created when missing (if allowed), remembered afterwards.
    pub async fn ensure(&mut self, topic: &str, kind: TopicKind) -> Result<TopicState, SinkError> {
        if self.known.contains(topic) {
            return Ok(TopicState::Ready);
        }
        let state = if self.config.create {
            self.create(topic, kind).await?
        } else {
            self.exists(topic).await?
        };
        if state == TopicState::Ready {
            self.known.insert(topic.to_string());
        }
        Ok(state)
    }

    async fn create(&self, topic: &str, kind: TopicKind) -> Result<TopicState, SinkError> {
        let partitions = match kind {
            TopicKind::Events => self.config.partitions,
            TopicKind::Checkpoint => self.config.checkpoint_partitions,
        };
        let mut new = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        match kind {
            TopicKind::Events => {
                for (k, v) in &self.config.config {
                    new = new.set(k, v);
                }
            }
            // Compacted, in segments small enough for the cleaner to keep it at about one record per
            // pipeline: a checkpoint goes with every Kafka transaction (~100 a second at the default linger).
            TopicKind::Checkpoint => {
                new = new
                    .set("cleanup.policy", "compact")
                    .set("segment.bytes", CHECKPOINT_SEGMENT_BYTES)
            }
        }
        let opts = AdminOptions::new()
            .operation_timeout(Some(self.timeout))
            .request_timeout(Some(self.timeout));
        let results =
            self.admin
                .create_topics([&new], &opts)
                .await
                .map_err(|source| SinkError::Unavailable {
                    op: "creating topics",
                    source,
                })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(match hint(code) {
                        Some(hint) => SinkError::Topic { topic: t, code, hint },
                        None => SinkError::Unavailable {
                            op: "creating topics",
                            source: rdkafka::error::KafkaError::AdminOp(code),
                        },
                    })
                }
            }
        }
        tracing::info!(topic, ?kind, "topic ready");
        Ok(TopicState::Ready)
    }

    async fn exists(&self, topic: &str) -> Result<TopicState, SinkError> {
        let (lookup, name, timeout) = (Arc::clone(&self.lookup), topic.to_string(), self.timeout);
        let present = tokio::task::spawn_blocking(move || {
            let md = lookup.fetch_metadata(Some(&name), timeout)?;
            Ok(md
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty()))
        })
        .await
        .unwrap_or(Err(rdkafka::error::KafkaError::Canceled))
        .map_err(|source| SinkError::Unavailable {
            op: "looking up a topic",
            source,
        })?;
        Ok(if present {
            TopicState::Ready
        } else {
            TopicState::Missing
        })
    }
}
