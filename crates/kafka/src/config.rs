//! The sink's configuration. Every default lives in the `Default` impls of this file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where and how the sink writes: broker, transactions, batching, routing, topics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// The producer's `transactional.id`. It must be stable across restarts and unique per pipeline: a second
    /// instance with the same id fences the first. When unset, the pipeline derives `outboxd-<slot name>`.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: the broker aborts a Kafka transaction open longer than this. The largest
    /// Postgres transaction of the outbox must stream within it (and within the broker's
    /// `transaction.max.timeout.ms`).
    pub transaction_timeout_ms: u64,
    /// When a Kafka transaction is closed (it always holds whole Postgres transactions).
    pub batch: BatchConfig,
    /// librdkafka `linger.ms`: how long the producer waits to fill a record batch.
    pub linger_ms: u64,
    /// librdkafka `batch.size`: the largest record batch in bytes.
    pub batch_size: u64,
    /// librdkafka `batch.num.messages`: the most records in one record batch.
    pub batch_num_messages: u64,
    /// librdkafka `compression.type` (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub compression: String,
    /// The largest record the sink produces, in bytes (also librdkafka `message.max.bytes`). A bigger event goes
    /// to the dead-letter topic as `too_large`. Keep it at or below the broker's `message.max.bytes` and the
    /// topics' `max.message.bytes`.
    pub max_message_bytes: usize,
    /// librdkafka `queue.buffering.max.messages`: records queued in the producer at most; with
    /// `queue_max_kbytes` this bounds the sink's memory whatever the transaction size or broker speed.
    pub queue_max_messages: u64,
    /// librdkafka `queue.buffering.max.kbytes`: kilobytes queued in the producer at most.
    pub queue_max_kbytes: u64,
    /// How long a single broker operation (init, commit, abort, admin request) may take, in milliseconds.
    pub request_timeout_ms: u64,
    /// How each event's destination topic is chosen.
    pub routing: RoutingConfig,
    /// The dead-letter topic: rejected events go there, in the same transaction, with `dlq_*` headers.
    pub dlq_topic: String,
    /// The compacted topic holding each pipeline's checkpoint (key = pipeline id). It is part of the state:
    /// deleting it turns the next restart into at-least-once for the unconfirmed tail.
    pub checkpoint_topic: String,
    /// Creation of missing topics (the broker is not expected to auto-create them).
    pub topics: TopicsConfig,
    /// Extra librdkafka settings passed through as-is (TLS, SASL, tuning). Refused: the ones exactly-once
    /// depends on (`transactional.id`, `enable.idempotence`, `acks`, ...), and the ones a typed setting
    /// already sets (`linger.ms` is `kafka.linger_ms`, ...: set that instead), so that no value is silently
    /// overridden.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            bootstrap_servers: "localhost:9092".into(),
            transactional_id: None,
            transaction_timeout_ms: 60_000,
            batch: BatchConfig::default(),
            linger_ms: 5,
            batch_size: 1_000_000,
            batch_num_messages: 10_000,
            compression: "none".into(),
            max_message_bytes: 1_000_000,
            queue_max_messages: 20_000,
            queue_max_kbytes: 16_384,
            request_timeout_ms: 30_000,
            routing: RoutingConfig::default(),
            dlq_topic: "outbox.dlq".into(),
            checkpoint_topic: "outboxd.checkpoints".into(),
            topics: TopicsConfig::default(),
            librdkafka: BTreeMap::new(),
        }
    }
}

/// When an open Kafka transaction is committed. It is closed only between two Postgres transactions, once one
/// of these limits is reached; a single Postgres transaction is never split, whatever its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Commit once the Kafka transaction holds at least this many records.
    pub max_events: u64,
    /// Commit once the Kafka transaction holds at least this many bytes (keys, values, headers).
    pub max_bytes: u64,
    /// Commit at the latest this many milliseconds after the Kafka transaction began (when the Postgres
    /// transaction in progress has ended): the bound on added latency when the outbox is quiet.
    pub linger_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 10_000,
            max_bytes: 16 * 1024 * 1024,
            linger_ms: 10,
        }
    }
}

/// How an event's topic is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMode {
    /// Expand [`RoutingConfig::topic_template`] over the event.
    #[default]
    Template,
    /// Send everything to [`RoutingConfig::fixed_topic`].
    Fixed,
    /// Use the event's topic column; fall back to the template when that column is null.
    Column,
}

/// Topic routing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Which rule picks the topic.
    pub mode: RouteMode,
    /// Template with `{aggregate_type}`, `{event_type}`, `{event_type.N}` (the N-th dot-separated part of the
    /// event type, from 0: `Order` of `Order.PaymentProcessed`) and `{event_type.N..M}` (parts N to M-1)
    /// placeholders (Debezium-style default). The outbox table needs an aggregate type column only when this
    /// template uses `{aggregate_type}`.
    pub topic_template: String,
    /// The single topic for `mode = "fixed"`.
    pub fixed_topic: Option<String>,
    /// A naming rule for event types, checked by the pipeline (a breaking event goes to the dead-letter topic
    /// as `bad_event_name`) and by `outboxd schemas check`: `"domain_entity_action"` asks for two or three
    /// dot-separated PascalCase parts (`Order.PaymentProcessed`, `Billing.Invoice.Paid`; the past tense of
    /// the verb is not checked). Default: none.
    pub event_name_rule: Option<EventNameRule>,
}

/// A naming rule for event types ([`RoutingConfig::event_name_rule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventNameRule {
    /// `Domain.Entity.Action`: two or three dot-separated parts, each PascalCase (`[A-Z][A-Za-z0-9]*`).
    DomainEntityAction,
}

impl EventNameRule {
    /// `Err` says how `name` breaks the rule.
    pub fn check(self, name: &str) -> Result<(), String> {
        match self {
            EventNameRule::DomainEntityAction => {
                let parts: Vec<&str> = name.split('.').collect();
                let pascal = |p: &&str| {
                    p.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                        && p.chars().all(|c| c.is_ascii_alphanumeric())
                };
                if !(2..=3).contains(&parts.len()) {
                    return Err(format!(
                        "event type {name:?} has {} dot-separated part(s); the rule Domain.Entity.Action wants 2 \
                         or 3 (Order.PaymentProcessed)",
                        parts.len()
                    ));
                }
                match parts.iter().find(|p| !pascal(p)) {
                    Some(bad) => Err(format!(
                        "event type {name:?}: part {bad:?} is not PascalCase ([A-Z][A-Za-z0-9]*), as the rule \
                         Domain.Entity.Action wants"
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

impl RoutingConfig {
    /// True when some event's topic may come from the template's `{aggregate_type}`.
    pub fn needs_aggregate_type(&self) -> bool {
        self.mode != RouteMode::Fixed
            && crate::topic_name::parse_template(&self.topic_template)
                .is_ok_and(|parts| parts.contains(&crate::topic_name::TemplatePart::AggregateType))
    }
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            mode: RouteMode::Template,
            topic_template: "outbox.event.{aggregate_type}".into(),
            fixed_topic: None,
            event_name_rule: None,
        }
    }
}

/// Creation of missing topics: the routed topics (on first sight), the dead-letter and checkpoint topics (at
/// start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Create missing topics. When false, every topic must exist beforehand.
    pub create: bool,
    /// Partitions of a created event or dead-letter topic.
    pub partitions: i32,
    /// Replication factor of created topics (`-1`: the broker's default).
    pub replication_factor: i32,
    /// Partitions of the checkpoint topic when created (it is compacted, in 16 MiB segments; one is plenty).
    pub checkpoint_partitions: i32,
    /// Extra topic configs for created event and dead-letter topics (e.g. `retention.ms`).
    pub config: BTreeMap<String, String>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            create: true,
            partitions: 3,
            replication_factor: -1,
            checkpoint_partitions: 1,
            config: BTreeMap::new(),
        }
    }
}

/// Settings exactly-once depends on: set by outboxd, refused in the passthrough map.
pub(crate) const PINNED_SETTINGS: &[&str] = &[
    "transactional.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "isolation.level",
];

/// librdkafka settings (and their aliases) that a typed setting of `[kafka]` sets: refused in the passthrough
/// map with a message naming both.
pub(crate) const TYPED_SETTINGS: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.bootstrap_servers"),
    ("metadata.broker.list", "kafka.bootstrap_servers"),
    ("transaction.timeout.ms", "kafka.transaction_timeout_ms"),
    ("linger.ms", "kafka.linger_ms"),
    ("queue.buffering.max.ms", "kafka.linger_ms"),
    ("batch.size", "kafka.batch_size"),
    ("batch.num.messages", "kafka.batch_num_messages"),
    ("compression.type", "kafka.compression"),
    ("compression.codec", "kafka.compression"),
    ("message.max.bytes", "kafka.max_message_bytes"),
    ("queue.buffering.max.messages", "kafka.queue_max_messages"),
    ("queue.buffering.max.kbytes", "kafka.queue_max_kbytes"),
];

impl SinkConfig {
    /// Checks what can be checked without a broker; the message says how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err("kafka.bootstrap_servers is empty: set it to host:port of a broker".into());
        }
        for key in self.librdkafka.keys() {
            if let Some((_, typed)) = TYPED_SETTINGS.iter().find(|(k, _)| k == key) {
                return Err(format!(
                    "kafka.librdkafka.\"{key}\" clashes with {typed}, which sets the same librdkafka setting: \
                     set {typed} instead and remove kafka.librdkafka.\"{key}\""
                ));
            }
        }
        if let Some(key) = self
            .librdkafka
            .keys()
            .find(|k| PINNED_SETTINGS.contains(&k.as_str()))
        {
            return Err(format!(
                "kafka.librdkafka.{key} cannot be overridden: exactly-once delivery depends on outboxd's value"
            ));
        }
        if self.routing.mode == RouteMode::Fixed && self.routing.fixed_topic.is_none() {
            return Err("kafka.routing.mode is \"fixed\" but kafka.routing.fixed_topic is not set".into());
        }
        if let Some(t) = &self.routing.fixed_topic {
            crate::topic_name::check_topic_name(t).map_err(|e| format!("kafka.routing.fixed_topic: {e}"))?;
        }
        crate::topic_name::check_template(&self.routing.topic_template)
            .map_err(|e| format!("kafka.routing.topic_template: {e}"))?;
        crate::topic_name::check_topic_name(&self.dlq_topic).map_err(|e| format!("kafka.dlq_topic: {e}"))?;
        crate::topic_name::check_topic_name(&self.checkpoint_topic)
            .map_err(|e| format!("kafka.checkpoint_topic: {e}"))?;
        if self.max_message_bytes < 1024 {
            return Err("kafka.max_message_bytes is below 1024: nothing useful would fit".into());
        }
        if self.batch.max_events == 0 {
            return Err("kafka.batch.max_events must be at least 1".into());
        }
        if self.topics.partitions < 1 || self.topics.checkpoint_partitions < 1 {
            return Err("kafka.topics.partitions and checkpoint_partitions must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_domain_entity_action_rule_checks_the_shape() {
        let rule = EventNameRule::DomainEntityAction;
        for good in ["Order.PaymentProcessed", "Billing.Invoice.Paid", "A.B"] {
            assert_eq!(rule.check(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("OrderCreated", "1 dot-separated part"),
            ("A.B.C.D", "4 dot-separated part"),
            ("order.PaymentProcessed", "\"order\" is not PascalCase"),
            ("Order.payment_processed", "not PascalCase"),
            ("Order..Paid", "\"\" is not PascalCase"),
        ] {
            let err = rule.check(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_aggregate_type_is_needed_only_by_a_template_that_uses_it() {
        let mut r = RoutingConfig::default();
        assert!(r.needs_aggregate_type());
        r.topic_template = "outbox.{event_type.0}".into();
        assert!(!r.needs_aggregate_type());
        r.topic_template = "outbox.{aggregate_type}".into();
        r.mode = RouteMode::Fixed;
        assert!(!r.needs_aggregate_type(), "a fixed topic needs nothing");
    }

    use super::*;

    fn with_passthrough(key: &str) -> SinkConfig {
        let mut c = SinkConfig::default();
        c.librdkafka.insert(key.into(), "1".into());
        c
    }

    #[test]
    fn a_passthrough_key_clashing_with_a_typed_setting_is_refused_naming_both() {
        for (key, typed) in TYPED_SETTINGS {
            let err = with_passthrough(key).validate().unwrap_err();
            assert!(err.contains(&format!("kafka.librdkafka.\"{key}\"")), "{err}");
            assert!(err.contains(typed), "{err}");
        }
        let err = with_passthrough("linger.ms").validate().unwrap_err();
        assert!(err.contains("kafka.linger_ms"), "{err}");
    }

    #[test]
    fn pinned_settings_are_refused_and_others_pass_through() {
        for key in PINNED_SETTINGS {
            let err = with_passthrough(key).validate().unwrap_err();
            assert!(err.contains("exactly-once"), "{err}");
        }
        for key in [
            "security.protocol",
            "sasl.mechanism",
            "socket.keepalive.enable",
            "partitioner",
        ] {
            assert_eq!(with_passthrough(key).validate(), Ok(()), "{key}");
        }
    }
}
