//! Confluent-framed Avro to the handler's serde type, with the writer schema fetched from the registry by id
//! once and cached. Every failure is either a decision about this one event (it goes to the dead-letter
//! topic) or the registry being away (the same event is tried again; nothing is dead-lettered for it).

use apache_avro::Schema;
use outboxd_avro::frame::{decode_datum, unframe};
use outboxd_avro::registry::Registry;
use outboxd_avro::{AvroConfig, AvroError};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::dlq::DeadLetterReason;

/// Why a value could not be decoded.
#[derive(Debug)]
pub(crate) enum DecodeFailure {
    /// This event can never be decoded: dead-letter it.
    Poison(DeadLetterReason, String),
    /// The registry did not answer: try again later.
    RegistryAway(AvroError),
}

/// Schemas by id, cached for the life of the process (a schema id never changes meaning).
#[derive(Debug)]
pub(crate) struct Decoder {
    registry: Registry,
    schemas: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl Decoder {
    pub fn new(registry_url: &str, timeout_ms: u64) -> Result<Decoder, AvroError> {
        let config = AvroConfig {
            registry_url: registry_url.to_string(),
            request_timeout_ms: timeout_ms,
            ..AvroConfig::default()
        };
        Ok(Decoder {
            registry: Registry::new(&config)?,
            schemas: Mutex::new(HashMap::new()),
        })
    }

    async fn schema(&self, id: u32) -> Result<Arc<Schema>, DecodeFailure> {
        if let Some(s) = self.schemas.lock().expect("schema cache lock").get(&id) {
            return Ok(Arc::clone(s));
        }
        let text = match self.registry.schema_by_id(id).await {
            Ok(Some(text)) => text,
            Ok(None) => {
                return Err(DecodeFailure::Poison(
                    DeadLetterReason::UnknownSchema,
                    format!("schema id {id} is not in the registry"),
                ))
            }
            Err(e) if e.is_retriable() => return Err(DecodeFailure::RegistryAway(e)),
            Err(e) => {
                return Err(DecodeFailure::Poison(
                    DeadLetterReason::UnknownSchema,
                    format!("schema id {id}: {e}"),
                ))
            }
        };
        let schema = Schema::parse_str(&text).map_err(|e| {
            DecodeFailure::Poison(
                DeadLetterReason::UnknownSchema,
                format!("schema id {id} does not parse as Avro: {e}"),
            )
        })?;
        let schema = Arc::new(schema);
        self.schemas
            .lock()
            .expect("schema cache lock")
            .insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    /// Decodes a record value: (writer schema id, payload).
    pub async fn decode<T: DeserializeOwned>(&self, value: Option<&[u8]>) -> Result<(u32, T), DecodeFailure> {
        let not_avro = |what: &str| DecodeFailure::Poison(DeadLetterReason::NotAvro, what.to_string());
        let bytes = value.ok_or_else(|| not_avro("the record has no value"))?;
        let (id, datum) = unframe(bytes).ok_or_else(|| {
            not_avro("the value is not in the Confluent wire format (magic byte 0, 4-byte schema id, Avro)")
        })?;
        let schema = self.schema(id).await?;
        let value = decode_datum(&schema, datum).map_err(|e| {
            DecodeFailure::Poison(
                DeadLetterReason::NotAvro,
                format!("the datum does not decode with schema id {id}: {e}"),
            )
        })?;
        let payload = apache_avro::from_value::<T>(&value).map_err(|e| {
            DecodeFailure::Poison(
                DeadLetterReason::SchemaMismatch,
                format!(
                    "schema id {id} ({}) does not fit the handler's type {}: {e}",
                    schema_name(&schema),
                    std::any::type_name::<T>()
                ),
            )
        })?;
        Ok((id, payload))
    }
}

fn schema_name(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => r.name.fullname(None),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)),
    }
}
