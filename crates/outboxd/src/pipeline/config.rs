//! The pipeline's configuration: the three stages' sections plus the pipeline's own. Every default lives in
//! a `Default` impl (the stages' in their crates, the pipeline's here).

use outboxd_avro::AvroConfig;
use outboxd_kafka::SinkConfig;
use outboxd_wal::{Field, SourceConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Everything one pipeline (one outbox table, one slot, one transactional id) needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Names this pipeline's checkpoint in the checkpoint topic (the record key). Keep it stable: a new id
    /// starts without a checkpoint. Default: the slot name.
    pub pipeline_id: Option<String>,
    /// The WAL source: Postgres, slot, publication, outbox table.
    pub source: SourceConfig,
    /// The Avro stage: schema registry, schemas, subject naming.
    pub avro: AvroConfig,
    /// The Kafka sink: broker, transactions, batching, routing, topics. Its `transactional_id` defaults to
    /// `outboxd-<slot name>`.
    pub kafka: SinkConfig,
    /// Backoff of restarts and retries.
    pub restart: RestartConfig,
    /// Metrics and health endpoints (used by `outboxd run`).
    pub observability: ObservabilityConfig,
}

/// Where `outboxd run` serves `/metrics`, `/healthz` and `/readyz`, and how often it samples the slot's lag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    /// `ip:port` of the HTTP endpoint; empty turns it (and the metrics recorder) off.
    pub listen: String,
    /// How often the replication lag (server WAL position minus the slot's confirmed LSN) is sampled, in ms.
    pub lag_sample_interval_ms: u64,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            listen: "0.0.0.0:9464".into(),
            lag_sample_interval_ms: 5_000,
        }
    }
}

/// How the pipeline waits before starting again, and before retrying an event the registry could not serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// First pause before a restart after a retriable failure (connection lost, aborted transaction), in ms.
    pub initial_backoff_ms: u64,
    /// Longest pause between restarts, in ms (the pause doubles up to it; it resets after a commit).
    pub max_backoff_ms: u64,
    /// Give up (return an error) after this many restarts in a row without a commit. Absent: never give up.
    pub max_restarts: Option<u32>,
    /// Longest pause between retries of an event whose schema the registry could not serve, in ms.
    pub encode_max_backoff_ms: u64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            max_restarts: None,
            encode_max_backoff_ms: 10_000,
        }
    }
}

impl RestartConfig {
    /// The first restart pause.
    pub fn initial_backoff(&self) -> Duration {
        Duration::from_millis(self.initial_backoff_ms.max(1))
    }

    /// The longest restart pause.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(self.initial_backoff_ms).max(1))
    }
}

impl PipelineConfig {
    /// The pipeline id: configured, else the slot name.
    pub fn pipeline_id(&self) -> String {
        self.pipeline_id
            .clone()
            .unwrap_or_else(|| self.source.slot.clone())
    }

    /// The producer's transactional id: configured, else `outboxd-<slot name>`.
    pub fn transactional_id(&self) -> String {
        self.kafka
            .transactional_id
            .clone()
            .unwrap_or_else(|| format!("outboxd-{}", self.source.slot))
    }

    /// The source's configuration, told which optional columns the routing needs: the aggregate type when
    /// the topic template uses `{aggregate_type}` (a table without that column then fails at start, naming
    /// it, instead of dead-lettering every event).
    pub fn source_config(&self) -> SourceConfig {
        let mut source = self.source.clone();
        if self.kafka.routing.needs_aggregate_type() && !source.columns.needed.contains(&Field::AggregateType)
        {
            source.columns.needed.push(Field::AggregateType);
        }
        source
    }

    /// Checks what can be checked without any service; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        self.source.validate().map_err(|e| e.to_string())?;
        self.kafka.validate()?;
        if self.pipeline_id().trim().is_empty() {
            return Err("pipeline_id is empty: set it, or leave it out to use the slot name".into());
        }
        if self.transactional_id().trim().is_empty() {
            return Err(
                "kafka.transactional_id is empty: set it, or leave it out to derive it from the slot".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derive_from_the_slot() {
        let mut c = PipelineConfig::default();
        c.source.slot = "orders_slot".into();
        assert_eq!(c.pipeline_id(), "orders_slot");
        assert_eq!(c.transactional_id(), "outboxd-orders_slot");
        c.pipeline_id = Some("orders".into());
        c.kafka.transactional_id = Some("tx-orders".into());
        assert_eq!(
            (c.pipeline_id(), c.transactional_id()),
            ("orders".into(), "tx-orders".into())
        );
        assert!(c.validate().is_ok());
        c.pipeline_id = Some(" ".into());
        assert!(c.validate().unwrap_err().contains("pipeline_id"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<PipelineConfig>(r#"{"kafka": {"bootstrap": "x"}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = serde_json::from_str::<PipelineConfig>(r#"{"restarts": {}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let c: PipelineConfig = serde_json::from_str(r#"{"restart": {"max_restarts": 3}}"#).unwrap();
        assert_eq!(c.restart.max_restarts, Some(3));
        assert_eq!(
            c.restart.initial_backoff_ms,
            RestartConfig::default().initial_backoff_ms
        );
    }
}
