//! Configuration of the Avro stage: where schemas come from, how subjects are named, what the gate enforces.
//!
//! Every default lives in [`AvroConfig::default`]; the enums carry their own `#[default]` variant, which that
//! one `Default` uses.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Settings of the Avro stage (the `[avro]` table of the outboxd configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AvroConfig {
    /// Base URL of the Confluent-compatible schema registry, e.g. `http://localhost:8081`.
    pub registry_url: String,
    /// HTTP basic-auth user for the registry, if it needs one.
    pub registry_username: Option<String>,
    /// HTTP basic-auth password for the registry (used only with `registry_username`).
    pub registry_password: Option<String>,
    /// Directory of `.avsc` files, one per event type. By default event type `X` uses `X.avsc` from here.
    pub schema_dir: PathBuf,
    /// Explicit schema source per event type: a file path (relative to `schema_dir` unless absolute), or
    /// `"latest"` / `"latest:<record fullname>"` to take the newest version from the registry. Event types
    /// not listed here use `<schema_dir>/<event type>.avsc`.
    pub event_types: BTreeMap<String, SchemaSource>,
    /// How subjects are named. Default `record_name` (`<record fullname>`), which stays correct when one
    /// topic carries several event types; see [`SubjectStrategy`].
    pub subject_strategy: SubjectStrategy,
    /// Compatibility level expected on every subject outboxd writes (default `BACKWARD`).
    pub compatibility: CompatibilityLevel,
    /// Per-subject overrides of `compatibility`, keyed by subject name.
    pub subject_compatibility: BTreeMap<String, CompatibilityLevel>,
    /// When true, the gate sets each subject's level with `PUT /config/{subject}` if it differs. When false,
    /// a registry level that differs from the configured one fails the gate.
    pub manage_compatibility: bool,
    /// When true, a schema that is compatible but not yet registered is registered at start. When false, it
    /// must already exist under its subject (register it through your own review process).
    pub auto_register: bool,
    /// What to do with payload fields that the schema does not declare: `reject` (default) or `ignore`.
    pub unknown_fields: UnknownFields,
    /// How Kafka keys (the aggregate id) are written: `string` (plain UTF-8, default) or `avro`.
    pub key_format: KeyFormat,
    /// Timeout of one registry HTTP request, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for AvroConfig {
    fn default() -> Self {
        AvroConfig {
            registry_url: "http://localhost:8081".into(),
            registry_username: None,
            registry_password: None,
            schema_dir: PathBuf::from("schemas"),
            event_types: BTreeMap::new(),
            subject_strategy: SubjectStrategy::default(),
            compatibility: CompatibilityLevel::default(),
            subject_compatibility: BTreeMap::new(),
            manage_compatibility: true,
            auto_register: true,
            unknown_fields: UnknownFields::default(),
            key_format: KeyFormat::default(),
            request_timeout_ms: 10_000,
        }
    }
}

impl AvroConfig {
    /// The compatibility level configured for `subject` (its override, else the default).
    pub fn level_for(&self, subject: &str) -> CompatibilityLevel {
        self.subject_compatibility
            .get(subject)
            .copied()
            .unwrap_or(self.compatibility)
    }
}

/// Where the schema of one event type comes from.
///
/// In configuration files it is a string: `"latest"`, `"latest:com.example.orders.OrderCreated"`, or a path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SchemaSource {
    /// An `.avsc` file; a relative path is resolved against `schema_dir`.
    File(PathBuf),
    /// The newest version registered under the event type's subject. The subject of the record-based
    /// strategies needs the record's fullname: `record` gives it, else the event type is taken as it.
    Latest {
        /// Fullname of the record, for record-based subject strategies.
        record: Option<String>,
    },
}

impl FromStr for SchemaSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("empty schema source: give a file path, \"latest\" or \"latest:<fullname>\"".into());
        }
        if s == "latest" {
            return Ok(SchemaSource::Latest { record: None });
        }
        if let Some(record) = s.strip_prefix("latest:") {
            if record.is_empty() {
                return Err("\"latest:\" needs a record fullname after the colon".into());
            }
            return Ok(SchemaSource::Latest {
                record: Some(record.to_string()),
            });
        }
        Ok(SchemaSource::File(PathBuf::from(s)))
    }
}

impl TryFrom<String> for SchemaSource {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SchemaSource> for String {
    fn from(s: SchemaSource) -> String {
        s.to_string()
    }
}

impl fmt::Display for SchemaSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaSource::File(p) => write!(f, "{}", p.display()),
            SchemaSource::Latest { record: None } => f.write_str("latest"),
            SchemaSource::Latest { record: Some(r) } => write!(f, "latest:{r}"),
        }
    }
}

/// Confluent subject naming strategies.
///
/// The default is [`SubjectStrategy::RecordName`]: an outbox routes by aggregate type, so one topic
/// (`orders`) usually carries several event types (`OrderCreated`, `OrderPaid`). Under
/// [`SubjectStrategy::TopicName`] they would all be versions of one subject `orders-value`, each new event
/// type a "new version" that the compatibility check compares with a different record, and it fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-value`: one schema lineage per topic (only for topics with one event type).
    TopicName,
    /// `<record fullname>`: one lineage per record type, whatever the topic.
    #[default]
    RecordName,
    /// `<topic>-<record fullname>`: one lineage per record type per topic.
    TopicRecordName,
}

impl SubjectStrategy {
    /// Whether the subject depends on the topic (then it is resolved at first use of a topic).
    pub fn needs_topic(self) -> bool {
        !matches!(self, SubjectStrategy::RecordName)
    }

    /// The value subject for a record written to `topic`.
    pub fn value_subject(self, topic: &str, record_fullname: &str) -> String {
        match self {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => record_fullname.to_string(),
            SubjectStrategy::TopicRecordName => format!("{topic}-{record_fullname}"),
        }
    }
}

/// The key subject of a topic (keys are always named by topic: the key schema is a plain `string`).
pub fn key_subject(topic: &str) -> String {
    format!("{topic}-key")
}

/// Schema registry compatibility levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// New schemas can read data written with the latest one.
    #[default]
    Backward,
    /// As `BACKWARD`, against every earlier version.
    BackwardTransitive,
    /// Data written with a new schema can be read with the latest one.
    Forward,
    /// As `FORWARD`, against every earlier version.
    ForwardTransitive,
    /// Both `BACKWARD` and `FORWARD`.
    Full,
    /// As `FULL`, against every earlier version.
    FullTransitive,
    /// No check.
    None,
}

impl CompatibilityLevel {
    /// The registry's spelling (`BACKWARD_TRANSITIVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
            CompatibilityLevel::None => "NONE",
        }
    }
}

impl FromStr for CompatibilityLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let all = [
            CompatibilityLevel::Backward,
            CompatibilityLevel::BackwardTransitive,
            CompatibilityLevel::Forward,
            CompatibilityLevel::ForwardTransitive,
            CompatibilityLevel::Full,
            CompatibilityLevel::FullTransitive,
            CompatibilityLevel::None,
        ];
        all.into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown compatibility level {s:?}"))
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with payload fields that the schema does not declare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// The payload is rejected (to the dead-letter topic), naming the field.
    #[default]
    Reject,
    /// The field is dropped.
    Ignore,
}

/// How the Kafka key (the aggregate id) is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// The aggregate id as plain UTF-8 bytes.
    #[default]
    String,
    /// Confluent-framed Avro `string`, its schema registered under `<topic>-key`.
    Avro,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_strategies_name_subjects() {
        let full = "com.example.orders.OrderCreated";
        assert_eq!(
            SubjectStrategy::TopicName.value_subject("orders", full),
            "orders-value"
        );
        assert_eq!(SubjectStrategy::RecordName.value_subject("orders", full), full);
        assert_eq!(
            SubjectStrategy::TopicRecordName.value_subject("orders", full),
            "orders-com.example.orders.OrderCreated"
        );
        assert_eq!(key_subject("orders"), "orders-key");
        assert!(!SubjectStrategy::default().needs_topic());
        assert!(SubjectStrategy::TopicName.needs_topic());
    }

    #[test]
    fn schema_source_parses_from_strings() {
        assert_eq!(
            "latest".parse::<SchemaSource>().unwrap(),
            SchemaSource::Latest { record: None }
        );
        assert_eq!(
            "latest:a.B".parse::<SchemaSource>().unwrap(),
            SchemaSource::Latest {
                record: Some("a.B".into())
            }
        );
        assert_eq!(
            "x/Y.avsc".parse::<SchemaSource>().unwrap(),
            SchemaSource::File("x/Y.avsc".into())
        );
        assert!("latest:".parse::<SchemaSource>().is_err());
        assert!("".parse::<SchemaSource>().is_err());
        for s in ["latest", "latest:a.B", "x/Y.avsc"] {
            assert_eq!(s.parse::<SchemaSource>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn levels_round_trip_and_overrides_apply() {
        for l in ["BACKWARD", "forward_transitive", "FULL", "NONE"] {
            let level: CompatibilityLevel = l.parse().unwrap();
            assert!(level.as_str().eq_ignore_ascii_case(l));
        }
        assert!("SIDEWAYS".parse::<CompatibilityLevel>().is_err());
        let mut c = AvroConfig::default();
        c.subject_compatibility
            .insert("s".into(), CompatibilityLevel::Full);
        assert_eq!(c.level_for("s"), CompatibilityLevel::Full);
        assert_eq!(c.level_for("t"), CompatibilityLevel::Backward);
    }

    #[test]
    fn config_deserializes_and_denies_unknown_fields() {
        let json = r#"{"registry_url":"http://r:1","event_types":{"A":"latest","B":"b.avsc"},
            "subject_strategy":"topic_record_name","compatibility":"FULL_TRANSITIVE","unknown_fields":"ignore",
            "key_format":"avro"}"#;
        let c: AvroConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.registry_url, "http://r:1");
        assert_eq!(c.event_types["A"], SchemaSource::Latest { record: None });
        assert_eq!(c.subject_strategy, SubjectStrategy::TopicRecordName);
        assert_eq!(c.compatibility, CompatibilityLevel::FullTransitive);
        assert_eq!(c.unknown_fields, UnknownFields::Ignore);
        assert_eq!(c.key_format, KeyFormat::Avro);
        assert_eq!(c.request_timeout_ms, AvroConfig::default().request_timeout_ms);
        let err = serde_json::from_str::<AvroConfig>(r#"{"registry":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
