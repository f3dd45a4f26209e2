//! Which outbox table column fills which [`OutboxEvent`] field, resolved by name against the table's columns
//! (from the catalog at start-up, and from each pgoutput Relation message), then applied to each inserted row.
//!
//! A row that cannot be mapped faithfully (a value that is not UTF-8, a bytea that is not hex, a value the
//! server did not send) still becomes an event, with [`OutboxEvent::defect`] saying why: it is never dropped.

use crate::pgoutput::{ColumnValue, TupleData};
use crate::WalError;
use outboxd_core::{Lsn, OutboxEvent};
use serde::{Deserialize, Serialize};

/// Type OID of `bytea`: its text form is `\x<hex>`, decoded to bytes for the payload.
pub const BYTEA_OID: u32 = 17;

/// A starting layout for [`ColumnMapping`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// outboxd's own table (`config/outbox.sql`): `id, aggregate_type, aggregate_id, event_type, payload`,
    /// and, when present, `headers, traceparent, tracestate, topic, created_at, schema_version`.
    #[default]
    Outboxd,
    /// Debezium's outbox layout: `id, aggregatetype, aggregateid, type, payload`, and, when present,
    /// `tracingspancontext` (its `traceparent=` / `tracestate=` entries).
    Debezium,
}

/// The table-to-event column mapping: a preset, with per-field overrides. A column named by an override must
/// exist; a preset's optional columns are used when the table has them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnMapping {
    /// The layout to start from.
    pub preset: Preset,
    /// Column for the event id (the consumers' idempotency key).
    pub id: Option<String>,
    /// Column for the aggregate type (routes to a topic).
    pub aggregate_type: Option<String>,
    /// Column for the aggregate id (the Kafka key).
    pub aggregate_id: Option<String>,
    /// Column for the event type (names the schema).
    pub event_type: Option<String>,
    /// Column for the payload (json, jsonb, text, varchar or bytea).
    pub payload: Option<String>,
    /// Column for the user headers (a JSON object of strings).
    pub headers: Option<String>,
    /// Column for the W3C traceparent.
    pub traceparent: Option<String>,
    /// Column for the W3C tracestate.
    pub tracestate: Option<String>,
    /// Column for an explicit destination topic.
    pub topic: Option<String>,
    /// Column for the creation time.
    pub created_at: Option<String>,
    /// Column for the schema version.
    pub schema_version: Option<String>,
    /// Fields the rest of the configuration needs, whose columns must then exist: `aggregate_type` when the
    /// topic template uses `{aggregate_type}`. Set by the pipeline from the routing; not a setting.
    #[serde(skip)]
    pub needed: Vec<Field>,
}

/// An [`OutboxEvent`] field that a column can fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `id`
    Id,
    /// `aggregate_type`
    AggregateType,
    /// `aggregate_id`
    AggregateId,
    /// `event_type`
    EventType,
    /// `payload`
    Payload,
    /// `headers`
    Headers,
    /// `traceparent`
    Traceparent,
    /// `tracestate`
    Tracestate,
    /// `topic`
    Topic,
    /// `created_at`
    CreatedAt,
    /// `schema_version`
    SchemaVersion,
}

impl Field {
    const ALL: [Field; 11] = [
        Field::Id,
        Field::AggregateType,
        Field::AggregateId,
        Field::EventType,
        Field::Payload,
        Field::Headers,
        Field::Traceparent,
        Field::Tracestate,
        Field::Topic,
        Field::CreatedAt,
        Field::SchemaVersion,
    ];

    /// The field's name in the configuration and in [`OutboxEvent`].
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::AggregateType => "aggregate_type",
            Field::AggregateId => "aggregate_id",
            Field::EventType => "event_type",
            Field::Payload => "payload",
            Field::Headers => "headers",
            Field::Traceparent => "traceparent",
            Field::Tracestate => "tracestate",
            Field::Topic => "topic",
            Field::CreatedAt => "created_at",
            Field::SchemaVersion => "schema_version",
        }
    }

    /// Every event needs these; the aggregate type only when the routing uses it ([`ColumnMapping::needed`]).
    fn required(self) -> bool {
        matches!(
            self,
            Field::Id | Field::AggregateId | Field::EventType | Field::Payload
        )
    }
}

/// How a column's text becomes the field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extract {
    /// The text as is.
    Plain,
    /// One `key=value` line of a Java-properties span context (Debezium's `tracingspancontext`); a bare
    /// `00-...` traceparent is taken as the traceparent.
    SpanContext(&'static str),
}

struct Source {
    column: String,
    must_exist: bool,
    extract: Extract,
}

impl ColumnMapping {
    fn override_for(&self, field: Field) -> Option<&String> {
        match field {
            Field::Id => self.id.as_ref(),
            Field::AggregateType => self.aggregate_type.as_ref(),
            Field::AggregateId => self.aggregate_id.as_ref(),
            Field::EventType => self.event_type.as_ref(),
            Field::Payload => self.payload.as_ref(),
            Field::Headers => self.headers.as_ref(),
            Field::Traceparent => self.traceparent.as_ref(),
            Field::Tracestate => self.tracestate.as_ref(),
            Field::Topic => self.topic.as_ref(),
            Field::CreatedAt => self.created_at.as_ref(),
            Field::SchemaVersion => self.schema_version.as_ref(),
        }
    }

    fn source(&self, field: Field) -> Option<Source> {
        if let Some(column) = self.override_for(field) {
            return Some(Source {
                column: column.clone(),
                must_exist: true,
                extract: Extract::Plain,
            });
        }
        let (column, extract) = match (self.preset, field) {
            (Preset::Outboxd, f) => (f.name(), Extract::Plain),
            (Preset::Debezium, Field::AggregateType) => ("aggregatetype", Extract::Plain),
            (Preset::Debezium, Field::AggregateId) => ("aggregateid", Extract::Plain),
            (Preset::Debezium, Field::EventType) => ("type", Extract::Plain),
            (Preset::Debezium, f @ (Field::Id | Field::Payload)) => (f.name(), Extract::Plain),
            (Preset::Debezium, Field::Traceparent) => {
                ("tracingspancontext", Extract::SpanContext("traceparent"))
            }
            (Preset::Debezium, Field::Tracestate) => {
                ("tracingspancontext", Extract::SpanContext("tracestate"))
            }
            (Preset::Debezium, _) => return None,
        };
        Some(Source {
            column: column.into(),
            must_exist: field.required() || self.needed.contains(&field),
            extract,
        })
    }

    /// The column that fills `field`, when the mapping has one (it may still be absent from the table).
    pub fn column_of(&self, field: Field) -> Option<String> {
        self.source(field).map(|s| s.column)
    }

    /// Checks the overrides without a database: column names must not be empty.
    pub fn check_names(&self) -> Result<(), WalError> {
        for field in Field::ALL {
            if self.override_for(field).is_some_and(|c| c.is_empty()) {
                return Err(WalError::Config(format!(
                    "columns.{} must not be empty",
                    field.name()
                )));
            }
        }
        Ok(())
    }

    /// Resolves the mapping against a table's columns (name, type OID), in attribute order. Fails naming the
    /// first required or explicitly mapped column the table lacks.
    pub fn resolve(&self, table: &str, columns: &[(&str, u32)]) -> Result<ResolvedMapping, WalError> {
        let mut fields = Vec::new();
        for field in Field::ALL {
            let Some(source) = self.source(field) else {
                continue;
            };
            match columns.iter().position(|(name, _)| *name == source.column) {
                Some(index) => fields.push(Resolved {
                    field,
                    index,
                    type_oid: columns[index].1,
                    extract: source.extract,
                }),
                None if source.must_exist => {
                    return Err(WalError::MissingColumn {
                        table: table.to_string(),
                        column: source.column,
                        field: field.name(),
                    })
                }
                None => {}
            }
        }
        Ok(ResolvedMapping {
            fields,
            width: columns.len(),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Resolved {
    field: Field,
    index: usize,
    type_oid: u32,
    extract: Extract,
}

/// A mapping bound to one layout of the outbox table: turns its rows into events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedMapping {
    fields: Vec<Resolved>,
    width: usize,
}

impl ResolvedMapping {
    /// Maps one inserted row. Never fails: what cannot be mapped is left out and named in `defect`.
    pub fn map_row(&self, row: &TupleData<'_>, lsn: Lsn) -> OutboxEvent {
        let mut event = OutboxEvent {
            lsn,
            ..OutboxEvent::default()
        };
        let mut defects = Vec::new();
        if row.columns.len() != self.width {
            defects.push(format!(
                "row has {} columns, its relation {}",
                row.columns.len(),
                self.width
            ));
        }
        for r in &self.fields {
            let name = r.field.name();
            let text = match row.columns.get(r.index) {
                None => continue,
                Some(ColumnValue::Null) => continue,
                Some(ColumnValue::Text(t)) => *t,
                Some(ColumnValue::UnchangedToast) => {
                    defects.push(format!(
                        "{name}: the server sent no value (unchanged TOAST) in an insert"
                    ));
                    continue;
                }
                Some(ColumnValue::Binary(_)) => {
                    defects.push(format!("{name}: binary column values are not supported"));
                    continue;
                }
            };
            if r.field == Field::Payload {
                event.payload = Some(if r.type_oid == BYTEA_OID {
                    decode_bytea(text).unwrap_or_else(|why| {
                        defects.push(format!("payload: {why}"));
                        text.to_vec()
                    })
                } else {
                    text.to_vec()
                });
                continue;
            }
            let Ok(text) = std::str::from_utf8(text) else {
                defects.push(format!("{name}: value is not valid UTF-8"));
                continue;
            };
            let value = match r.extract {
                Extract::Plain => Some(text.to_string()),
                Extract::SpanContext(key) => span_context_entry(text, key),
            };
            let slot = match r.field {
                Field::Id => &mut event.id,
                Field::AggregateType => &mut event.aggregate_type,
                Field::AggregateId => &mut event.aggregate_id,
                Field::EventType => &mut event.event_type,
                Field::Headers => &mut event.headers,
                Field::Traceparent => &mut event.traceparent,
                Field::Tracestate => &mut event.tracestate,
                Field::Topic => &mut event.topic,
                Field::CreatedAt => &mut event.created_at,
                Field::SchemaVersion => &mut event.schema_version,
                Field::Payload => continue, // handled above
            };
            *slot = value;
        }
        if !defects.is_empty() {
            event.defect = Some(defects.join("; "));
        }
        event
    }
}

/// Decodes bytea's hex text form (`\x0102ff`).
pub fn decode_bytea(text: &[u8]) -> Result<Vec<u8>, String> {
    let hex_digits = text
        .strip_prefix(br"\x")
        .ok_or_else(|| "bytea value is not in hex format (is bytea_output = escape?)".to_string())?;
    hex::decode(hex_digits).map_err(|e| format!("bytea value is not valid hex: {e}"))
}

/// Picks `key=value` out of a Java-properties span context; a bare traceparent stands for itself.
fn span_context_entry(text: &str, key: &str) -> Option<String> {
    let from_properties = text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    });
    match from_properties {
        Some(v) => Some(v),
        None if key == "traceparent" && text.trim().starts_with("00-") && !text.contains('=') => {
            Some(text.trim().to_string())
        }
        None => None,
    }
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
