//! The consumer's configuration. Every default is in the `Default` impls (and the two `default_*` functions)
//! of this file, and nowhere else; every struct refuses unknown keys, so a typo fails at start.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything [`crate::run`] needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The consumer group: instances with the same group share the partitions. Also names this consumer's
    /// rows in the Postgres inbox and its keys in Redis, so two services never shadow each other's events.
    pub group_id: String,
    /// The topics to read (outboxd's event topics, e.g. `outbox.event.order`).
    pub topics: Vec<String>,
    /// Base URL of the Confluent-compatible schema registry that outboxd registers its schemas in.
    pub registry_url: String,
    /// Timeout of one registry request, in ms.
    pub registry_timeout_ms: u64,
    /// The consumer's own dead-letter topic: events that cannot be decoded, or whose handler kept failing,
    /// go here with `consumer_dlq_*` headers, the original key, value and headers.
    pub dlq_topic: String,
    /// Create the dead-letter topic at start when it does not exist.
    pub create_dlq_topic: bool,
    /// Partitions of the dead-letter topic when it is created.
    pub dlq_partitions: i32,
    /// How many events may be handled at once, over all partitions (each partition is handled in order, one
    /// event at a time). Also the size of the Postgres connection pool.
    pub max_in_flight: usize,
    /// Events fetched but not yet handled, per partition: a slow handler fills this and then slows fetching.
    pub partition_buffer: usize,
    /// How often handled offsets are committed to Kafka, in ms (librdkafka's `auto.commit.interval.ms`; only
    /// offsets whose effect, or dead letter, is durable are ever committed).
    pub commit_interval_ms: u64,
    /// Kafka consumer session timeout, in ms: how long a silent instance keeps its partitions.
    pub session_timeout_ms: u64,
    /// Static group membership (`group.instance.id`): an instance restarted with the same id within the
    /// session timeout gets its partitions back without a rebalance. Unique per instance (e.g. the pod name).
    pub instance_id: Option<String>,
    /// How often the consumer lag gauge is refreshed (librdkafka `statistics.interval.ms`), in ms; 0: never.
    pub lag_interval_ms: u64,
    /// Handler retries.
    pub retry: RetryConfig,
    /// Where processed event ids are kept.
    pub store: StoreConfig,
    /// Extra librdkafka consumer settings (e.g. `security.protocol`). Keys the consumer sets itself
    /// (`isolation.level`, `enable.auto.commit`, `enable.auto.offset.store`, `group.id`) are refused.
    pub librdkafka: BTreeMap<String, String>,
}

/// Retries of a failing handler: exponential backoff from `initial_backoff_ms`, doubling up to
/// `max_backoff_ms`, for at most `max_attempts` attempts; then the event is dead-lettered as `handler_failed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all (the first one included) before the event goes to the dead-letter topic. At least 1.
    pub max_attempts: u32,
    /// Pause after the first failure, in ms.
    pub initial_backoff_ms: u64,
    /// The longest pause, in ms.
    pub max_backoff_ms: u64,
}

/// The idempotency store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum StoreConfig {
    /// The event id is inserted into an inbox table in the same Postgres transaction as the handler's writes:
    /// each event's effects happen exactly once, whatever crashes.
    PostgresInbox {
        /// Connection URL of the database holding the inbox and the handler's tables.
        pg_url: String,
        /// The inbox table, `schema.table`; created when absent.
        #[serde(default = "default_inbox_table")]
        table: String,
    },
    /// The event id is set in Redis with a TTL after the handler succeeded: duplicates arriving within the TTL
    /// are skipped. Weaker than the inbox: see docs/consumers.md.
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// How long an event id is remembered, in seconds.
        #[serde(default = "default_ttl_secs")]
        ttl_secs: u64,
    },
}

fn default_inbox_table() -> String {
    "public.outboxd_inbox".into()
}

fn default_ttl_secs() -> u64 {
    86_400
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: String::new(),
            topics: Vec::new(),
            registry_url: "http://127.0.0.1:8081".into(),
            registry_timeout_ms: 10_000,
            dlq_topic: String::new(),
            create_dlq_topic: true,
            dlq_partitions: 1,
            max_in_flight: 16,
            partition_buffer: 256,
            commit_interval_ms: 1_000,
            session_timeout_ms: 10_000,
            instance_id: None,
            lag_interval_ms: 5_000,
            retry: RetryConfig::default(),
            store: StoreConfig::default(),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig::PostgresInbox {
            pg_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            table: default_inbox_table(),
        }
    }
}

/// librdkafka keys the consumer owns: its guarantees depend on them.
pub(crate) const OWNED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "isolation.level",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.commit.interval.ms",
    "group.instance.id",
    "statistics.interval.ms",
];

impl ConsumerConfig {
    /// Checks what serde cannot: names that must be set, bounds. The message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let need = |v: &str, key: &str, example: &str| {
            if v.trim().is_empty() {
                Err(format!("{key} is not set: set it, e.g. {key} = \"{example}\""))
            } else {
                Ok(())
            }
        };
        need(&self.group_id, "group_id", "order-projection")?;
        need(&self.dlq_topic, "dlq_topic", "order-projection.dlq")?;
        need(&self.bootstrap_servers, "bootstrap_servers", "kafka:9092")?;
        need(&self.registry_url, "registry_url", "http://registry:8081")?;
        if self.topics.is_empty() {
            return Err(
                "topics is empty: name outboxd's event topics, e.g. topics = [\"outbox.event.order\"]".into(),
            );
        }
        if self.topics.contains(&self.dlq_topic) {
            return Err(format!(
                "dlq_topic {} is also in topics: give the dead letters a topic of their own",
                self.dlq_topic
            ));
        }
        if self.dlq_partitions < 1 {
            return Err("dlq_partitions must be at least 1".into());
        }
        if self.max_in_flight == 0 || self.partition_buffer == 0 {
            return Err("max_in_flight and partition_buffer must be at least 1".into());
        }
        if self.retry.max_attempts == 0 {
            return Err("retry.max_attempts must be at least 1 (1 = no retry)".into());
        }
        if let Some(k) = self.librdkafka.keys().find(|k| OWNED_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "librdkafka.\"{k}\" is set by the consumer itself (its guarantees depend on it): remove it"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ConsumerConfig {
        ConsumerConfig {
            group_id: "g".into(),
            topics: vec!["outbox.event.order".into()],
            dlq_topic: "g.dlq".into(),
            ..ConsumerConfig::default()
        }
    }

    #[test]
    fn validation_names_the_fix() {
        assert_eq!(valid().validate(), Ok(()));
        let err = |c: ConsumerConfig| c.validate().unwrap_err();
        assert!(err(ConsumerConfig {
            group_id: " ".into(),
            ..valid()
        })
        .contains("group_id = "));
        assert!(err(ConsumerConfig {
            topics: vec![],
            ..valid()
        })
        .contains("topics"));
        assert!(err(ConsumerConfig {
            dlq_topic: "outbox.event.order".into(),
            ..valid()
        })
        .contains("own"));
        let mut c = valid();
        c.librdkafka
            .insert("isolation.level".into(), "read_uncommitted".into());
        assert!(err(c).contains("remove it"));
        let mut c = valid();
        c.retry.max_attempts = 0;
        assert!(err(c).contains("max_attempts"));
    }

    #[test]
    fn unknown_keys_are_refused_and_defaults_fill_the_rest() {
        let c: ConsumerConfig = toml::from_str(
            "group_id = \"g\"\ntopics = [\"t\"]\ndlq_topic = \"d\"\n[store]\nkind = \"redis\"\nurl = \"redis://h/\"\n",
        )
        .unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Redis {
                url: "redis://h/".into(),
                ttl_secs: 86_400
            }
        );
        assert_eq!(c.retry, RetryConfig::default());
        assert!(toml::from_str::<ConsumerConfig>("group_idd = \"g\"").is_err());
        assert!(toml::from_str::<ConsumerConfig>("[retry]\nmax_attempt = 3").is_err());
        assert!(toml::from_str::<ConsumerConfig>("[store]\nkind = \"redis\"\nurl = \"u\"\nttl = 3").is_err());
    }
}
