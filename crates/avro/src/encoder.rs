//! The encoder the pipeline shares: schemas loaded and gated at connect, ids cached, payloads encoded with no
//! registry round trip in the steady state.

use crate::config::{key_subject, AvroConfig, KeyFormat};
use crate::error::{reason, AvroError, EncodeError};
use crate::frame::{encode_payload, frame_string};
use crate::gate::{Bound, Gate, GateReport};
use crate::registry::Registry;
use crate::schemas::{load_schemas, LoadedSchema, SchemaSet};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One encoded value, with the schema it was written with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPayload {
    /// Confluent wire format: magic 0, schema id (4 bytes, big-endian), Avro binary.
    pub bytes: Vec<u8>,
    /// The registry's id of the writer schema.
    pub schema_id: u32,
    /// The subject the schema is registered under (shared: no copy per event).
    pub subject: Arc<str>,
    /// Its version under the subject, when known.
    pub version: Option<i32>,
}

/// One subject to gate: the event types sharing it and their schema source.
#[derive(Debug)]
struct Target {
    subject: String,
    event_types: Vec<String>,
    /// `None` for a `latest` source.
    schema: Option<Arc<LoadedSchema>>,
}

/// Subjects to gate for `pairs` of (topic, event type), or for every event type when the strategy does not
/// need the topic; returns also the event types left for first use of a topic.
fn plan(config: &AvroConfig, set: &SchemaSet, pairs: &[(String, String)]) -> (Vec<Target>, Vec<String>) {
    let strategy = config.subject_strategy;
    let all: Vec<&String> = set.files.keys().chain(set.latest.keys()).collect();
    let mut wanted: Vec<(Option<&str>, &str)> = Vec::new();
    let mut deferred = Vec::new();
    if strategy.needs_topic() {
        for et in &all {
            let topics: Vec<&str> = pairs
                .iter()
                .filter(|(_, e)| e == *et)
                .map(|(t, _)| t.as_str())
                .collect();
            if topics.is_empty() {
                deferred.push(et.to_string());
            }
            wanted.extend(topics.into_iter().map(|t| (Some(t), et.as_str())));
        }
    } else {
        wanted.extend(all.iter().map(|et| (None, et.as_str())));
    }
    let mut targets: Vec<Target> = Vec::new();
    for (topic, et) in wanted {
        let schema = set.files.get(et).cloned();
        let fullname = match &schema {
            Some(s) => s.fullname.clone().unwrap_or_else(|| et.to_string()),
            None => set
                .latest
                .get(et)
                .cloned()
                .flatten()
                .unwrap_or_else(|| et.to_string()),
        };
        let subject = strategy.value_subject(topic.unwrap_or_default(), &fullname);
        let same = |t: &Target| {
            t.subject == subject
                && match (&t.schema, &schema) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.normalized() == b.normalized(),
                    (None, None) => true,
                    _ => false,
                }
        };
        match targets.iter_mut().find(|t| same(t)) {
            Some(t) => t.event_types.push(et.to_string()),
            None => targets.push(Target {
                subject,
                event_types: vec![et.to_string()],
                schema,
            }),
        }
    }
    (targets, deferred)
}

/// Runs the gate over `targets`; returns the report and, per passing target, its event types and binding.
async fn run_gate(
    gate: Gate<'_>,
    targets: Vec<Target>,
    deferred: Vec<String>,
) -> Result<(GateReport, Vec<(Vec<String>, Bound)>), AvroError> {
    gate.registry.ping().await?;
    let mut report = GateReport {
        subjects: Vec::new(),
        deferred,
    };
    let mut bound = Vec::new();
    for t in targets {
        let (entry, b) = match &t.schema {
            Some(schema) => gate.file(&t.subject, t.event_types.clone(), schema).await?,
            None => gate.latest(&t.subject, t.event_types.clone()).await?,
        };
        if let Some(b) = b {
            bound.push((t.event_types, b));
        }
        report.subjects.push(entry);
    }
    Ok((report, bound))
}

/// Checks every schema against the registry without running the pipeline (`outboxd schemas check`).
/// `register = false` changes nothing in the registry; `true` does what start-up does (set managed levels,
/// register when `auto_register`). Subjects of topic-based strategies are listed as deferred: see
/// [`check_schemas_for_topics`].
pub async fn check_schemas(config: &AvroConfig, register: bool) -> Result<GateReport, AvroError> {
    check_schemas_for_topics(config, register, &[]).await
}

/// As [`check_schemas`], also gating the subjects of the given (topic, event type) pairs for topic-based
/// strategies.
pub async fn check_schemas_for_topics(
    config: &AvroConfig,
    register: bool,
    pairs: &[(String, String)],
) -> Result<GateReport, AvroError> {
    let set = load_schemas(config)?;
    let registry = Registry::new(config)?;
    let (targets, deferred) = plan(config, &set, pairs);
    let gate = Gate {
        registry: &registry,
        config,
        apply: register,
    };
    Ok(run_gate(gate, targets, deferred).await?.0)
}

/// Encodes outbox payloads as Confluent-framed Avro. Cheap to clone and share across tasks.
#[derive(Clone, Debug)]
pub struct Encoder {
    inner: Arc<Inner>,
}

type ByTopic = HashMap<String, HashMap<String, Arc<Bound>>>;

#[derive(Debug)]
struct Inner {
    config: AvroConfig,
    registry: Registry,
    set: SchemaSet,
    /// Event type -> binding, for subjects that do not depend on the topic (filled at connect).
    fixed: HashMap<String, Arc<Bound>>,
    /// Topic -> event type -> binding, for topic-based strategies (filled at first use).
    by_topic: RwLock<ByTopic>,
    /// Topic -> key schema id (Avro keys).
    key_ids: RwLock<HashMap<String, u32>>,
    /// Serializes first-use gating so that one pair is gated once.
    first_use: tokio::sync::Mutex<()>,
    report: GateReport,
}

impl Encoder {
    /// Loads the schemas and runs the gate (setting managed levels, registering when `auto_register`).
    /// Fails with [`AvroError::GateFailed`] when a subject does not pass; a retriable error means the
    /// registry was away.
    pub async fn connect(config: AvroConfig) -> Result<Encoder, AvroError> {
        let set = load_schemas(&config)?;
        let registry = Registry::new(&config)?;
        let (targets, deferred) = plan(&config, &set, &[]);
        let gate = Gate {
            registry: &registry,
            config: &config,
            apply: true,
        };
        let (report, bound) = run_gate(gate, targets, deferred).await?;
        for s in &report.subjects {
            tracing::info!(subject = %s.subject, passed = s.outcome.passed(), "schema gate: {s}");
        }
        if !report.passed() {
            return Err(AvroError::GateFailed(Box::new(report)));
        }
        let mut fixed = HashMap::new();
        for (event_types, b) in bound {
            let b = Arc::new(b);
            for et in event_types {
                fixed.insert(et, Arc::clone(&b));
            }
        }
        let inner = Inner {
            config,
            registry,
            set,
            fixed,
            by_topic: RwLock::default(),
            key_ids: RwLock::default(),
            first_use: tokio::sync::Mutex::new(()),
            report,
        };
        Ok(Encoder {
            inner: Arc::new(inner),
        })
    }

    /// The gate's report from [`Encoder::connect`].
    pub fn gate_report(&self) -> &GateReport {
        &self.inner.report
    }

    /// Encodes one payload of `event_type` for `topic`. In the steady state this is pure CPU work; the first
    /// use of a (topic, event type) pair under a topic-based strategy gates its subject first.
    pub async fn encode(
        &self,
        topic: &str,
        event_type: &str,
        payload: &[u8],
    ) -> Result<EncodedPayload, EncodeError> {
        let bound = self.bound(topic, event_type).await?;
        let bytes = encode_payload(&bound.schema, bound.id, payload, self.inner.config.unknown_fields)
            .map_err(EncodeError::Rejected)?;
        Ok(EncodedPayload {
            bytes,
            schema_id: bound.id,
            subject: Arc::clone(&bound.subject),
            version: bound.version,
        })
    }

    /// The Kafka key for `aggregate_id`: plain UTF-8, or Confluent-framed Avro `string` under `<topic>-key`.
    pub async fn encode_key(&self, topic: &str, aggregate_id: &str) -> Result<Vec<u8>, EncodeError> {
        match self.inner.config.key_format {
            KeyFormat::String => Ok(aggregate_id.as_bytes().to_vec()),
            KeyFormat::Avro => Ok(frame_string(self.key_id(topic).await?, aggregate_id)),
        }
    }

    async fn bound(&self, topic: &str, event_type: &str) -> Result<Arc<Bound>, EncodeError> {
        let inner = &self.inner;
        if let Some(b) = inner.fixed.get(event_type) {
            return Ok(Arc::clone(b));
        }
        if !inner.config.subject_strategy.needs_topic() || !inner.set.knows(event_type) {
            return Err(EncodeError::rejected(
                reason::UNKNOWN_EVENT_TYPE,
                format!(
                    "no schema for event type {event_type:?}: add {}/{event_type}.avsc or map it in \
                     avro.event_types",
                    inner.config.schema_dir.display()
                ),
            ));
        }
        if let Some(b) = lookup(&inner.by_topic, topic, event_type) {
            return Ok(b);
        }
        let _guard = inner.first_use.lock().await;
        if let Some(b) = lookup(&inner.by_topic, topic, event_type) {
            return Ok(b);
        }
        let (targets, _) = plan(
            &inner.config,
            &inner.set,
            &[(topic.to_string(), event_type.to_string())],
        );
        let gate = Gate {
            registry: &inner.registry,
            config: &inner.config,
            apply: true,
        };
        let (report, bound) = run_gate(gate, targets, Vec::new())
            .await
            .map_err(EncodeError::from_avro)?;
        for s in &report.subjects {
            tracing::info!(subject = %s.subject, topic, passed = s.outcome.passed(), "schema gate at first use: {s}");
        }
        let b = match bound.into_iter().next() {
            Some((_, b)) if report.passed() => Arc::new(b),
            _ => return Err(EncodeError::Fatal(AvroError::GateFailed(Box::new(report)))),
        };
        let mut map = inner.by_topic.write().unwrap_or_else(|p| p.into_inner());
        map.entry(topic.to_string())
            .or_default()
            .insert(event_type.to_string(), Arc::clone(&b));
        Ok(b)
    }

    async fn key_id(&self, topic: &str) -> Result<u32, EncodeError> {
        let inner = &self.inner;
        let cached = |ids: &RwLock<HashMap<String, u32>>| {
            ids.read().unwrap_or_else(|p| p.into_inner()).get(topic).copied()
        };
        if let Some(id) = cached(&inner.key_ids) {
            return Ok(id);
        }
        let _guard = inner.first_use.lock().await;
        if let Some(id) = cached(&inner.key_ids) {
            return Ok(id);
        }
        let schema = Arc::new(key_schema());
        let subject = key_subject(topic);
        let gate = Gate {
            registry: &inner.registry,
            config: &inner.config,
            apply: true,
        };
        let (entry, bound) = gate
            .file(&subject, Vec::new(), &schema)
            .await
            .map_err(EncodeError::from_avro)?;
        let Some(b) = bound.filter(|_| entry.outcome.passed()) else {
            let report = GateReport {
                subjects: vec![entry],
                deferred: Vec::new(),
            };
            return Err(EncodeError::Fatal(AvroError::GateFailed(Box::new(report))));
        };
        inner
            .key_ids
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string(), b.id);
        Ok(b.id)
    }
}

fn lookup(map: &RwLock<ByTopic>, topic: &str, event_type: &str) -> Option<Arc<Bound>> {
    let map = map.read().unwrap_or_else(|p| p.into_inner());
    map.get(topic).and_then(|m| m.get(event_type)).cloned()
}

/// The key schema of [`KeyFormat::Avro`]: a plain Avro `string`.
fn key_schema() -> LoadedSchema {
    LoadedSchema::parse(r#""string""#, "key schema \"string\"").unwrap_or_else(|e| unreachable!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SubjectStrategy;

    fn set() -> SchemaSet {
        let rec = |name: &str| {
            let text = format!(r#"{{"type":"record","name":"{name}","namespace":"n","fields":[]}}"#);
            Arc::new(LoadedSchema::parse(&text, format!("{name}.avsc")).unwrap())
        };
        let mut set = SchemaSet::default();
        set.files.insert("A".into(), rec("A"));
        set.files.insert("A2".into(), rec("A"));
        set.files.insert("B".into(), rec("B"));
        set.latest.insert("L".into(), Some("n.L".into()));
        set
    }

    #[test]
    fn plan_groups_event_types_by_subject() {
        let config = AvroConfig::default();
        let (targets, deferred) = plan(&config, &set(), &[]);
        let subjects: Vec<_> = targets
            .iter()
            .map(|t| (t.subject.as_str(), t.event_types.clone()))
            .collect();
        assert_eq!(
            subjects,
            [
                ("n.A", vec!["A".to_string(), "A2".into()]),
                ("n.B", vec!["B".into()]),
                ("n.L", vec!["L".into()])
            ]
        );
        assert!(deferred.is_empty());
    }

    #[test]
    fn plan_defers_topic_subjects_until_a_topic_is_known() {
        let config = AvroConfig {
            subject_strategy: SubjectStrategy::TopicRecordName,
            ..Default::default()
        };
        let (targets, deferred) = plan(&config, &set(), &[("orders".into(), "B".into())]);
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].subject, "orders-n.B");
        assert_eq!(deferred, ["A", "A2", "L"]);
        let config = AvroConfig {
            subject_strategy: SubjectStrategy::TopicName,
            ..Default::default()
        };
        let (targets, _) = plan(
            &config,
            &set(),
            &[("t".into(), "A".into()), ("t".into(), "B".into())],
        );
        let subjects: Vec<_> = targets.iter().map(|t| t.subject.as_str()).collect();
        assert_eq!(
            subjects,
            ["t-value", "t-value"],
            "two schemas under one subject are gated apart"
        );
    }

    #[test]
    fn encoder_is_send_sync_and_key_schema_parses() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Encoder>();
        // The futures can be spawned on a multi-threaded runtime.
        fn assert_send<T: Send>(_: &T) {}
        fn futures_are_send(e: &Encoder) {
            assert_send(&e.encode("t", "E", b"{}"));
            assert_send(&e.encode_key("t", "k"));
            assert_send(&Encoder::connect(AvroConfig::default()));
            assert_send(&check_schemas(&AvroConfig::default(), false));
        }
        let _checked_at_compile_time: fn(&Encoder) = futures_are_send;
        assert_eq!(key_schema().schema, apache_avro::Schema::String);
    }
}
