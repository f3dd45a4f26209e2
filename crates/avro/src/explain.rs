//! Why a schema change is incompatible, said by field path, for registries that answer only
//! `{"is_compatible": false}`. Pure: two parsed schemas and a compatibility level in, reasons out.
//!
//! `BACKWARD` asks whether the new schema can read data written with the old one; `FORWARD` whether the old
//! one can read data written with the new one; `FULL` both. The rules are Avro's schema resolution: a field
//! the reader has and the writer lacks needs a default; a type may only be promoted (int → long, float,
//! double; long → float, double; float → double; string ↔ bytes); an enum symbol the writer may write must
//! exist in the reader (or the reader has a default symbol).

use crate::CompatibilityLevel;
use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::schema_compatibility::SchemaCompatibility;

/// Reasons the change from `old` to `new` breaks `level`, each naming the field path (`$.items[].qty`);
/// empty when the two are compatible at that level.
pub fn incompatibilities(old: &Schema, new: &Schema, level: CompatibilityLevel) -> Vec<String> {
    use CompatibilityLevel as L;
    let mut out = Vec::new();
    if matches!(
        level,
        L::Backward | L::BackwardTransitive | L::Full | L::FullTransitive
    ) {
        explain(old, new, "$", Direction::Backward, &mut out);
    }
    if matches!(
        level,
        L::Forward | L::ForwardTransitive | L::Full | L::FullTransitive
    ) {
        explain(new, old, "$", Direction::Forward, &mut out);
    }
    out
}

/// Which way data flows in the check.
#[derive(Clone, Copy, Debug)]
enum Direction {
    /// The new schema reads the old one's data.
    Backward,
    /// The old schema reads the new one's data.
    Forward,
}

impl Direction {
    fn why(self) -> &'static str {
        match self {
            Direction::Backward => "the new schema cannot read data written with the old one",
            Direction::Forward => "the old schema cannot read data written with the new one",
        }
    }

    /// A field the reader has and the writer lacks, with no default in the reader.
    fn missing(self, at: &str) -> String {
        match self {
            Direction::Backward => format!(
                "{at}: added without a default ({}: its records have no {at})",
                self.why()
            ),
            Direction::Forward => format!(
                "{at}: removed, and the old schema gives it no default ({}: the new records have no {at})",
                self.why()
            ),
        }
    }
}

/// Why `reader` cannot read what `writer` wrote, at `path`.
fn explain(writer: &Schema, reader: &Schema, path: &str, dir: Direction, out: &mut Vec<String>) {
    let why = dir.why();
    match (writer, reader) {
        (Schema::Record(w), Schema::Record(r)) => record(w, r, path, dir, out),
        (Schema::Array(w), Schema::Array(r)) => explain(&w.items, &r.items, &format!("{path}[]"), dir, out),
        (Schema::Map(w), Schema::Map(r)) => explain(&w.types, &r.types, &format!("{path}{{}}"), dir, out),
        (Schema::Enum(w), Schema::Enum(r)) => {
            let missing: Vec<&str> = w
                .symbols
                .iter()
                .filter(|s| !r.symbols.contains(s))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() && r.default.is_none() {
                out.push(format!(
                    "{path}: enum symbol(s) {} removed, and the reader has no default symbol ({why})",
                    missing.join(", ")
                ));
            }
        }
        _ if SchemaCompatibility::can_read(writer, reader).is_ok() => {}
        _ => out.push(format!(
            "{path}: type changed from {} to {} ({why})",
            type_name(writer),
            type_name(reader)
        )),
    }
}

fn record(w: &RecordSchema, r: &RecordSchema, path: &str, dir: Direction, out: &mut Vec<String>) {
    let before = out.len();
    for field in &r.fields {
        let at = format!("{path}.{}", field.name);
        let in_writer = w
            .fields
            .iter()
            .find(|f| f.name == field.name || field.aliases.contains(&f.name));
        match in_writer {
            Some(wf) => explain(&wf.schema, &field.schema, &at, dir, out),
            None if field.default.is_none() => out.push(dir.missing(&at)),
            None => {}
        }
    }
    if out.len() == before {
        // Something else (names, namespaces): Avro's own words.
        if let Err(e) = SchemaCompatibility::can_read(&Schema::Record(w.clone()), &Schema::Record(r.clone()))
        {
            out.push(format!("{path}: {e} ({})", dir.why()));
        }
    }
}

fn type_name(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
        Schema::Union(u) => format!(
            "union [{}]",
            u.variants().iter().map(type_name).collect::<Vec<_>>().join(", ")
        ),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CompatibilityLevel as L;

    fn parse(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"Order","namespace":"t","fields":{fields}}}"#
        ))
        .unwrap()
    }

    fn reasons(old: &str, new: &str, level: CompatibilityLevel) -> Vec<String> {
        incompatibilities(&parse(old), &parse(new), level)
    }

    #[test]
    fn a_field_added_without_a_default_is_named() {
        let old = r#"[{"name":"id","type":"string"}]"#;
        let new = r#"[{"name":"id","type":"string"},{"name":"amount","type":"int"}]"#;
        let r = reasons(old, new, L::Backward);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].starts_with("$.amount: added without a default"), "{r:?}");
        assert!(
            reasons(old, new, L::Forward).is_empty(),
            "old readers ignore the new field"
        );
        let with_default = r#"[{"name":"id","type":"string"},{"name":"amount","type":"int","default":0}]"#;
        assert!(reasons(old, with_default, L::Full).is_empty());
    }

    #[test]
    fn a_type_change_names_the_nested_path_and_both_types() {
        let old = r#"[{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"qty","type":"int"}]}}}]"#;
        let new = r#"[{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"qty","type":"string"}]}}}]"#;
        let r = reasons(old, new, L::Backward);
        assert_eq!(r, ["$.items[].qty: type changed from int to string (the new schema cannot read data written with the old one)"]);
        let promoted = r#"[{"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[{"name":"qty","type":"long"}]}}}]"#;
        assert!(
            reasons(old, promoted, L::Backward).is_empty(),
            "int to long is a promotion"
        );
        assert!(
            !reasons(old, promoted, L::Forward).is_empty(),
            "but long cannot be read as int"
        );
    }

    #[test]
    fn a_removed_enum_symbol_is_named() {
        let old =
            r#"[{"name":"state","type":{"type":"enum","name":"S","symbols":["NEW","PAID","SHIPPED"]}}]"#;
        let new = r#"[{"name":"state","type":{"type":"enum","name":"S","symbols":["NEW","PAID"]}}]"#;
        let r = reasons(old, new, L::Backward);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("$.state: enum symbol(s) SHIPPED removed"),
            "{r:?}"
        );
    }

    #[test]
    fn a_field_removed_without_a_default_breaks_forward() {
        let old = r#"[{"name":"id","type":"string"},{"name":"note","type":"string"}]"#;
        let new = r#"[{"name":"id","type":"string"}]"#;
        assert!(reasons(old, new, L::Backward).is_empty());
        let r = reasons(old, new, L::Forward);
        assert!(
            r[0].starts_with("$.note: removed, and the old schema gives it no default"),
            "{r:?}"
        );
    }
}
