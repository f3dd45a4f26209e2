//! Loading and parsing schemas: the `.avsc` files of the schema directory and the event-type mapping.
//!
//! Config problems are fatal and name the file: unreadable directory, unreadable file, invalid schema, a
//! top-level type other than a record.

use crate::config::{AvroConfig, SchemaSource};
use crate::convert::named_types;
use crate::error::AvroError;
use crate::onepass::Plan;
use apache_avro::schema::Names;
use apache_avro::Schema;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A parsed schema, ready to convert payloads: the schema, its named types, its compiled encoding plan, the
/// text registered for it.
#[derive(Debug)]
pub struct LoadedSchema {
    /// The parsed schema.
    pub schema: Schema,
    /// Its named types, to resolve references while converting.
    pub names: Names,
    /// The compact JSON text sent to the registry.
    pub text: String,
    /// The fullname of the top-level named type (`com.example.orders.OrderCreated`), if it has one.
    pub fullname: Option<String>,
    /// Where it came from, for messages: a file path, or `subject/version` in the registry.
    pub origin: String,
    /// Whether the schema refers to a named type by name (then writing needs the names resolved).
    pub has_refs: bool,
    /// The schema compiled for the one-pass encoder ([`crate::frame::encode_payload`]).
    pub plan: Arc<Plan>,
}

impl LoadedSchema {
    /// Parses schema text (JSON). `origin` names it in messages.
    pub fn parse(text: &str, origin: impl Into<String>) -> Result<LoadedSchema, String> {
        let json: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let schema = Schema::parse(&json).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        let names = named_types(&schema).map_err(|e| format!("unresolvable named types: {e}"))?;
        let fullname = schema.name().map(|n| n.fullname(None));
        let has_refs = has_refs(&schema);
        let plan = Arc::new(Plan::compile(&schema, &names));
        Ok(LoadedSchema {
            schema,
            names,
            text: json.to_string(),
            fullname,
            origin: origin.into(),
            has_refs,
            plan,
        })
    }

    /// A normalized form of the whole schema (defaults, docs and logical types included) for equality.
    pub fn normalized(&self) -> String {
        normalized(&self.schema)
    }
}

fn has_refs(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => true,
        Schema::Array(a) => has_refs(&a.items),
        Schema::Map(m) => has_refs(&m.types),
        Schema::Union(u) => u.variants().iter().any(has_refs),
        Schema::Record(r) => r.fields.iter().any(|f| has_refs(&f.schema)),
        _ => false,
    }
}

/// A normalized form of a whole schema, stable across formatting and key order.
pub fn normalized(schema: &Schema) -> String {
    serde_json::to_string(schema).unwrap_or_else(|_| schema.canonical_form())
}

/// Where each event type's schema comes from, after applying the defaults.
#[derive(Debug, Default)]
pub struct SchemaSet {
    /// Event types whose schema is a file, parsed.
    pub files: BTreeMap<String, Arc<LoadedSchema>>,
    /// Event types whose schema is the registry's latest, with the record fullname for record strategies.
    pub latest: BTreeMap<String, Option<String>>,
}

impl SchemaSet {
    /// Whether the event type has a schema source.
    pub fn knows(&self, event_type: &str) -> bool {
        self.files.contains_key(event_type) || self.latest.contains_key(event_type)
    }
}

fn list_dir(dir: &Path) -> Result<BTreeMap<String, PathBuf>, AvroError> {
    let err = |e: std::io::Error| AvroError::SchemaDir {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    };
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().is_some_and(|e| e == "avsc") && path.is_file() {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                out.insert(stem.to_string(), path.clone());
            }
        }
    }
    Ok(out)
}

fn load_file(path: &Path) -> Result<LoadedSchema, AvroError> {
    let fail = |detail: String| AvroError::SchemaFile {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let loaded = LoadedSchema::parse(&text, path.display().to_string()).map_err(fail)?;
    if !matches!(loaded.schema, Schema::Record(_)) {
        return Err(fail(
            "the top-level type must be a record (payloads are JSON objects)".into(),
        ));
    }
    Ok(loaded)
}

/// Reads the schema directory and the explicit mapping. Every file used is parsed now, so a bad file stops
/// the start with its name rather than rejecting events later.
pub fn load_schemas(config: &AvroConfig) -> Result<SchemaSet, AvroError> {
    let only_registry = !config.event_types.is_empty()
        && config
            .event_types
            .values()
            .all(|s| matches!(s, SchemaSource::Latest { .. }));
    let mut paths = if only_registry && !config.schema_dir.exists() {
        BTreeMap::new()
    } else {
        list_dir(&config.schema_dir)?
    };
    let mut set = SchemaSet::default();
    for (event_type, source) in &config.event_types {
        match source {
            SchemaSource::File(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    config.schema_dir.join(p)
                };
                paths.insert(event_type.clone(), path);
            }
            SchemaSource::Latest { record } => {
                paths.remove(event_type);
                set.latest.insert(event_type.clone(), record.clone());
            }
        }
    }
    if paths.is_empty() && set.latest.is_empty() {
        return Err(AvroError::SchemaDir {
            path: config.schema_dir.clone(),
            detail: "no .avsc file and no event type mapped to the registry".into(),
        });
    }
    for (event_type, path) in paths {
        set.files.insert(event_type, Arc::new(load_file(&path)?));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"{"type":"record","name":"A","namespace":"x","fields":[{"name":"f","type":"int"}]}"#;

    fn dir_with(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("outboxd-avro-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[test]
    fn loads_directory_and_mapping() {
        let dir = dir_with(&[("A.avsc", REC), ("notes.txt", "x"), ("B.avsc", REC)]);
        let mut config = AvroConfig {
            schema_dir: dir.clone(),
            ..Default::default()
        };
        config
            .event_types
            .insert("Legacy".into(), "latest:x.L".parse().unwrap());
        config
            .event_types
            .insert("Alias".into(), "A.avsc".parse().unwrap());
        config.event_types.insert("B".into(), "latest".parse().unwrap());
        let set = load_schemas(&config).unwrap();
        assert_eq!(set.files.keys().collect::<Vec<_>>(), ["A", "Alias"]);
        assert_eq!(set.files["A"].fullname.as_deref(), Some("x.A"));
        assert_eq!(set.latest.get("Legacy"), Some(&Some("x.L".to_string())));
        assert_eq!(set.latest.get("B"), Some(&None));
        assert!(set.knows("B") && set.knows("A") && !set.knows("C"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_files_are_fatal_and_named() {
        for (text, needle) in [
            ("{not json", "not JSON"),
            (r#"{"type":"record","name":"A"}"#, "not a valid Avro schema"),
            (r#""string""#, "must be a record"),
        ] {
            let dir = dir_with(&[("Bad.avsc", text)]);
            let config = AvroConfig {
                schema_dir: dir.clone(),
                ..Default::default()
            };
            let err = load_schemas(&config).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, AvroError::SchemaFile { .. }), "{msg}");
            assert!(msg.contains("Bad.avsc") && msg.contains(needle), "{msg}");
            std::fs::remove_dir_all(dir).unwrap();
        }
        let missing = AvroConfig {
            schema_dir: "/nonexistent/outboxd".into(),
            ..Default::default()
        };
        let err = load_schemas(&missing).unwrap_err();
        assert!(
            matches!(err, AvroError::SchemaDir { .. }) && err.to_string().contains("/nonexistent/outboxd")
        );
        let mut mapped = AvroConfig {
            schema_dir: std::env::temp_dir(),
            ..Default::default()
        };
        mapped
            .event_types
            .insert("X".into(), "nope/X.avsc".parse().unwrap());
        let err = load_schemas(&mapped).unwrap_err();
        assert!(
            err.to_string().contains("nope/X.avsc") && err.to_string().contains("cannot read"),
            "{err}"
        );
        // Only registry sources: the directory may be absent.
        let mut registry_only = missing.clone();
        registry_only
            .event_types
            .insert("X".into(), "latest".parse().unwrap());
        assert_eq!(load_schemas(&registry_only).unwrap().latest.len(), 1);
    }

    #[test]
    fn normalized_form_ignores_formatting_but_not_defaults() {
        let a = LoadedSchema::parse(REC, "a").unwrap();
        let spaced = REC.replace(',', " ,\n ");
        let b = LoadedSchema::parse(&spaced, "b").unwrap();
        assert_eq!(a.normalized(), b.normalized());
        let with_default = REC.replace(r#""type":"int""#, r#""type":"int","default":0"#);
        let c = LoadedSchema::parse(&with_default, "c").unwrap();
        assert_ne!(a.normalized(), c.normalized());
        assert!(!a.has_refs);
        let recursive = r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#;
        assert!(LoadedSchema::parse(recursive, "r").unwrap().has_refs);
        let reparsed: serde_json::Value = serde_json::from_str(&a.text).unwrap();
        assert_eq!(reparsed, serde_json::from_str::<serde_json::Value>(REC).unwrap());
        assert!(!a.text.contains('\n'));
    }
}
