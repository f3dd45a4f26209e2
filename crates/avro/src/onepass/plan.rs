//! A schema compiled once into a flat table of nodes the one-pass encoder walks.
//!
//! Compiling mirrors [`crate::convert::Converter`] rule by rule, so that walking the plan decides exactly
//! what the converter decides: references are resolved to node indices the way the converter resolves them
//! (the name, then the name in the enclosing namespace); records keep their fields in schema order with a
//! key lookup (field names and aliases); unions list their branches per JSON kind (the converter's
//! `kind_fits`), their tagged-form keys (its `branch_is`) and their null branch; every message fragment
//! (`record com.example.Address`, `one of [null, int]`) is formatted here, not per event. Record defaults
//! are encoded to Avro bytes once, for each unknown-field policy, when the plan is built.

use super::json::Kind;
use super::Ctx;
use crate::config::UnknownFields;
use crate::convert::time::Zone;
use crate::convert::{describe_schema, kind_fits, type_key, ConvertError};
use apache_avro::schema::{InnerDecimalSchema, Names, NamespaceRef, RecordSchema, UuidSchema};
use apache_avro::Schema;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Index of a node in [`Plan::nodes`].
pub(crate) type NodeId = u32;

/// A schema compiled for the one-pass encoder (see the module docs). Built by [`Plan::compile`].
#[derive(Debug)]
pub struct Plan {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: NodeId,
}

/// One schema position, references resolved.
#[derive(Debug)]
pub(crate) enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array {
        items: NodeId,
        describe: Box<str>,
    },
    Map {
        values: NodeId,
        describe: Box<str>,
    },
    Union(Box<UnionPlan>),
    Record(Box<RecordPlan>),
    Enum {
        describe: Box<str>,
        symbols: Box<[Box<str>]>,
        mismatch: Box<str>,
    },
    Fixed {
        size: usize,
        what: Box<str>,
    },
    Decimal {
        precision: usize,
        scale: usize,
        fixed: Option<(usize, Box<str>)>,
        describe: Box<str>,
    },
    BigDecimal,
    Uuid(UuidForm),
    Date,
    TimeMillis,
    TimeMicros,
    Timestamp {
        zone: Zone,
        per_unit: i128,
    },
    Duration,
    /// A reference the converter's lookup cannot resolve: every value there fails with this message.
    Unresolved(Box<str>),
}

/// How a `uuid` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UuidForm {
    String,
    Bytes,
    Fixed,
}

/// A union: branches resolved, candidates per JSON kind, tagged-form keys.
#[derive(Debug)]
pub(crate) struct UnionPlan {
    pub(crate) branches: Box<[NodeId]>,
    pub(crate) null_branch: Option<u32>,
    /// Branches a plain value of each [`Kind`] is tried against, in order (unresolved branches everywhere,
    /// as the converter stops at them whatever the value).
    pub(crate) by_kind: [Box<[u32]>; Kind::COUNT],
    /// Keys of Avro-JSON's `{"<type>": value}` form, with their branch, in branch order.
    pub(crate) tags: Box<[(Box<str>, u32)]>,
    /// `one of [null, int]`.
    pub(crate) expected: Box<str>,
}

impl UnionPlan {
    /// The first branch answering to `key` in the tagged form.
    pub(crate) fn tag_branch(&self, key: &str) -> Option<u32> {
        self.tags.iter().find(|(k, _)| &**k == key).map(|&(_, i)| i)
    }
}

/// A record: fields in schema order and what each JSON key means.
#[derive(Debug)]
pub(crate) struct RecordPlan {
    /// `record com.example.Address`.
    pub(crate) describe: Box<str>,
    /// The fullname, for messages.
    pub(crate) name: Box<str>,
    pub(crate) fields: Box<[FieldPlan]>,
    /// Every key the schema knows (field names and aliases): `Some(field)` for a field name.
    lookup: HashMap<Box<str>, Option<u32>>,
}

/// Records of at most this many fields find a key's field by scanning their names.
const SCAN_FIELDS: usize = 16;

/// What a JSON object key is to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyClass {
    /// The name of this field.
    Field(u32),
    /// An alias: not unknown, but not read either (as the converter reads fields by name).
    Known,
    /// Not in the schema.
    Unknown,
}

impl RecordPlan {
    /// Classifies `key`, trying field `hint` first (keys usually come in schema order).
    pub(crate) fn classify(&self, key: &str, hint: usize) -> KeyClass {
        if self.fields.get(hint).is_some_and(|f| &*f.name == key) {
            return KeyClass::Field(hint as u32);
        }
        // Keys often come in another order (jsonb sorts them by length): for a small record a scan of the
        // names is cheaper than hashing the key; aliases and unknown keys are still answered by the map.
        if self.fields.len() <= SCAN_FIELDS {
            if let Some(i) = self.fields.iter().position(|f| &*f.name == key) {
                return KeyClass::Field(i as u32);
            }
        }
        match self.lookup.get(key) {
            Some(Some(i)) => KeyClass::Field(*i),
            Some(None) => KeyClass::Known,
            None => KeyClass::Unknown,
        }
    }
}

/// A record field: its node and its default, encoded lazily once per unknown-field policy.
#[derive(Debug)]
pub(crate) struct FieldPlan {
    pub(crate) name: Box<str>,
    pub(crate) node: NodeId,
    /// The schema default, if any.
    pub(crate) default_json: Option<serde_json::Value>,
    /// The default as Avro bytes, or the message of an absent field, per [`UnknownFields`].
    pub(crate) defaults: [OnceLock<Result<Box<[u8]>, String>>; 2],
    /// The message when the field is absent and has no default.
    pub(crate) missing: Box<str>,
}

/// Index of an unknown-field policy in [`FieldPlan::defaults`].
pub(crate) fn mode_index(unknown: UnknownFields) -> usize {
    match unknown {
        UnknownFields::Reject => 0,
        UnknownFields::Ignore => 1,
    }
}

impl Plan {
    /// Compiles `schema` (whose named types are `names`, see [`crate::convert::named_types`]) and encodes
    /// every record default.
    pub fn compile(schema: &Schema, names: &Names) -> Plan {
        let mut c = Compiler {
            names,
            nodes: Vec::new(),
            records: HashMap::new(),
        };
        let root = c.node(schema, schema.namespace());
        let plan = Plan { nodes: c.nodes, root };
        for node in &plan.nodes {
            if let Node::Record(r) = node {
                for field in r.fields.iter() {
                    for unknown in [UnknownFields::Reject, UnknownFields::Ignore] {
                        let _ = Ctx::new(unknown).default_of(&plan, field);
                    }
                }
            }
        }
        plan
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}

struct Compiler<'a> {
    names: &'a Names,
    nodes: Vec<Node>,
    /// Records compiled so far, by fullname (references and recursion end here).
    records: HashMap<String, NodeId>,
}

impl Compiler<'_> {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    fn node(&mut self, schema: &Schema, ns: NamespaceRef<'_>) -> NodeId {
        let schema = match resolve(self.names, schema, ns) {
            Ok(s) => s,
            Err(message) => return self.push(Node::Unresolved(message.into())),
        };
        let node = match schema {
            Schema::Ref { .. } => {
                Node::Unresolved(format!("unresolved reference {}", describe_schema(schema)).into())
            }
            Schema::Null => Node::Null,
            Schema::Boolean => Node::Boolean,
            Schema::Int => Node::Int,
            Schema::Long => Node::Long,
            Schema::Float => Node::Float,
            Schema::Double => Node::Double,
            Schema::Bytes => Node::Bytes,
            Schema::String => Node::String,
            Schema::Array(a) => Node::Array {
                items: self.node(&a.items, ns),
                describe: describe_schema(schema).into(),
            },
            Schema::Map(m) => Node::Map {
                values: self.node(&m.types, ns),
                describe: describe_schema(schema).into(),
            },
            Schema::Union(u) => {
                let variants = u.variants();
                let branches: Vec<NodeId> = variants.iter().map(|s| self.node(s, ns)).collect();
                let mut by_kind: [Vec<u32>; Kind::COUNT] = Default::default();
                let mut tags = Vec::new();
                for (i, s) in variants.iter().enumerate() {
                    let resolved = resolve(self.names, s, ns);
                    for kind in Kind::ALL {
                        if resolved.as_ref().map_or(true, |r| kind_fits(r, kind)) {
                            by_kind[kind as usize].push(i as u32);
                        }
                    }
                    for key in branch_keys(resolved.unwrap_or(s), ns) {
                        tags.push((key.into_boxed_str(), i as u32));
                    }
                }
                let listed: Vec<String> = variants.iter().map(describe_schema).collect();
                Node::Union(Box::new(UnionPlan {
                    branches: branches.into(),
                    null_branch: variants
                        .iter()
                        .position(|s| matches!(s, Schema::Null))
                        .map(|i| i as u32),
                    by_kind: by_kind.map(Vec::into_boxed_slice),
                    tags: tags.into(),
                    expected: format!("one of [{}]", listed.join(", ")).into(),
                }))
            }
            Schema::Record(r) => return self.record(r),
            Schema::Enum(e) => Node::Enum {
                describe: format!("enum {}", e.name).into(),
                symbols: e.symbols.iter().map(|s| s.clone().into_boxed_str()).collect(),
                mismatch: format!("a symbol of enum {} ({})", e.name, e.symbols.join(", ")).into(),
            },
            Schema::Fixed(f) => Node::Fixed {
                size: f.size,
                what: format!(
                    "fixed {} ({} bytes as a string of code points 0-255)",
                    f.name, f.size
                )
                .into(),
            },
            Schema::Decimal(d) => Node::Decimal {
                precision: d.precision,
                scale: d.scale,
                fixed: match &d.inner {
                    InnerDecimalSchema::Fixed(f) => Some((f.size, f.name.to_string().into())),
                    InnerDecimalSchema::Bytes => None,
                },
                describe: describe_schema(schema).into(),
            },
            Schema::BigDecimal => Node::BigDecimal,
            Schema::Uuid(UuidSchema::String) => Node::Uuid(UuidForm::String),
            Schema::Uuid(UuidSchema::Bytes) => Node::Uuid(UuidForm::Bytes),
            Schema::Uuid(UuidSchema::Fixed(_)) => Node::Uuid(UuidForm::Fixed),
            Schema::Date => Node::Date,
            Schema::TimeMillis => Node::TimeMillis,
            Schema::TimeMicros => Node::TimeMicros,
            Schema::TimestampMillis => Node::Timestamp {
                zone: Zone::Required,
                per_unit: 1_000_000,
            },
            Schema::TimestampMicros => Node::Timestamp {
                zone: Zone::Required,
                per_unit: 1_000,
            },
            Schema::TimestampNanos => Node::Timestamp {
                zone: Zone::Required,
                per_unit: 1,
            },
            Schema::LocalTimestampMillis => Node::Timestamp {
                zone: Zone::Forbidden,
                per_unit: 1_000_000,
            },
            Schema::LocalTimestampMicros => Node::Timestamp {
                zone: Zone::Forbidden,
                per_unit: 1_000,
            },
            Schema::LocalTimestampNanos => Node::Timestamp {
                zone: Zone::Forbidden,
                per_unit: 1,
            },
            Schema::Duration(_) => Node::Duration,
        };
        self.push(node)
    }

    fn record(&mut self, r: &RecordSchema) -> NodeId {
        let fullname = r.name.to_string();
        if let Some(&id) = self.records.get(&fullname) {
            return id;
        }
        let id = self.push(Node::Null);
        self.records.insert(fullname.clone(), id);
        let ns = r.name.namespace();
        let fields = r
            .fields
            .iter()
            .map(|f| FieldPlan {
                name: f.name.clone().into(),
                node: self.node(&f.schema, ns),
                default_json: f.default.clone(),
                defaults: Default::default(),
                missing: format!(
                    "missing required field of record {} (the schema gives no default)",
                    r.name
                )
                .into(),
            })
            .collect::<Box<[_]>>();
        let lookup = r
            .lookup
            .keys()
            .map(|k| {
                let field = fields
                    .iter()
                    .position(|f| &*f.name == k.as_str())
                    .map(|i| i as u32);
                (k.clone().into_boxed_str(), field)
            })
            .collect();
        self.nodes[id as usize] = Node::Record(Box::new(RecordPlan {
            describe: format!("record {}", r.name).into(),
            name: fullname.into(),
            fields,
            lookup,
        }));
        id
    }
}

/// The converter's `resolve`: a reference by its name, then by its name in the enclosing namespace.
fn resolve<'s>(names: &'s Names, schema: &'s Schema, ns: NamespaceRef<'_>) -> Result<&'s Schema, String> {
    match schema {
        Schema::Ref { name } => names
            .get(name)
            .or_else(|| names.get(&name.fully_qualified_name(ns)))
            .ok_or_else(|| format!("schema references unknown type {name}")),
        other => Ok(other),
    }
}

/// The keys the converter's `branch_is` answers to for a (resolved) branch.
fn branch_keys(schema: &Schema, ns: NamespaceRef<'_>) -> Vec<String> {
    match schema.name() {
        Some(name) => vec![name.name().to_string(), name.fullname(ns)],
        None => type_key(schema).map(str::to_string).into_iter().collect(),
    }
}

/// The message of an absent field whose default does not fit.
pub(crate) fn default_mismatch(e: &ConvertError) -> String {
    format!("field absent and its schema default does not fit: {e}")
}
