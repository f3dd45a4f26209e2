//! The schema gate: before anything is produced, every subject outboxd writes has the configured
//! compatibility level, and every schema is compatible with what the registry holds (and registered, or
//! required to exist).
//!
//! ```text
//!  per subject:  level ── GET /config/{s} ──(differs)──▶ PUT /config/{s}  (manage_compatibility, else fail)
//!                lookup ─ already registered? ─────────▶ Registered{id, version}
//!                POST /compatibility/subjects/{s}/versions/latest ─(no)─▶ Incompatible{reasons}
//!                auto_register ? POST /subjects/{s}/versions ─▶ Registered : Missing
//! ```

use crate::config::{AvroConfig, CompatibilityLevel};
use crate::error::AvroError;
use crate::registry::{Compat, Registration, Registry};
use crate::schemas::LoadedSchema;
use std::fmt;
use std::sync::Arc;

/// What the gate concluded for one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Compatible but not registered (a check that does not register: it would be registered at start).
    Compatible,
    /// In the registry under this subject (just registered, or already there).
    Registered {
        /// Global schema id.
        id: u32,
        /// Version under the subject, when known.
        version: Option<i32>,
    },
    /// The registry refuses the schema at the subject's level.
    Incompatible {
        /// The registry's reasons.
        reasons: Vec<String>,
    },
    /// Not registered, and registering is off (`auto_register = false`), or a `latest` subject is empty.
    Missing,
    /// The registry applies another level than configured and `manage_compatibility` is off.
    LevelMismatch {
        /// The level the registry applies.
        registry: Option<CompatibilityLevel>,
    },
}

impl Outcome {
    /// Whether this subject passes the gate.
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Compatible | Outcome::Registered { .. })
    }
}

/// The gate's result for one subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectReport {
    /// The subject.
    pub subject: String,
    /// The event types written under it.
    pub event_types: Vec<String>,
    /// Where the schema came from (file path, or `registry latest`).
    pub origin: String,
    /// The configured level.
    pub level: CompatibilityLevel,
    /// The level the registry applied before the gate (`None` when not asked or unknown).
    pub registry_level: Option<CompatibilityLevel>,
    /// The verdict.
    pub outcome: Outcome,
}

/// The gate's result: one entry per subject, plus the event types whose subject depends on the topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateReport {
    /// One entry per (subject, schema).
    pub subjects: Vec<SubjectReport>,
    /// Event types whose subject needs the topic (topic-based strategies): gated at first use of a topic.
    pub deferred: Vec<String>,
}

impl GateReport {
    /// Whether every subject passed.
    pub fn passed(&self) -> bool {
        self.subjects.iter().all(|s| s.outcome.passed())
    }

    /// The subjects that failed.
    pub fn failures(&self) -> impl Iterator<Item = &SubjectReport> {
        self.subjects.iter().filter(|s| !s.outcome.passed())
    }
}

impl fmt::Display for SubjectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.outcome.passed() { "ok  " } else { "FAIL" };
        write!(
            f,
            "{mark} {} [{}] ({}; event types: {}): ",
            self.subject,
            self.level,
            self.origin,
            self.event_types.join(", ")
        )?;
        match &self.outcome {
            Outcome::Compatible => f.write_str("compatible, not registered yet")?,
            Outcome::Registered { id, version: Some(v) } => write!(f, "registered, id {id}, version {v}")?,
            Outcome::Registered { id, version: None } => write!(f, "registered, id {id}")?,
            Outcome::Incompatible { reasons } => {
                write!(f, "incompatible at level {}: {}", self.level, reasons.join("; "))?
            }
            Outcome::Missing => f.write_str(
                "not registered, and auto_register is off: register it, or set avro.auto_register = true",
            )?,
            Outcome::LevelMismatch { registry } => write!(
                f,
                "the registry applies {} but {} is configured: fix the registry, or set \
                 avro.manage_compatibility = true",
                registry.map_or("an unknown level", CompatibilityLevel::as_str),
                self.level
            )?,
        }
        if let Some(r) = self.registry_level.filter(|r| *r != self.level) {
            if self.outcome.passed() {
                write!(f, " (registry level was {r})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for GateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.subjects {
            writeln!(f, "{s}")?;
        }
        if !self.deferred.is_empty() {
            writeln!(
                f,
                "deferred to first use of a topic: {}",
                self.deferred.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A schema bound to its registry id: what encoding needs.
#[derive(Debug)]
pub(crate) struct Bound {
    pub schema: Arc<LoadedSchema>,
    pub id: u32,
    pub subject: Arc<str>,
    pub version: Option<i32>,
}

/// One gate run: the registry, the settings, and whether it may change the registry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate<'a> {
    pub registry: &'a Registry,
    pub config: &'a AvroConfig,
    /// Set levels (when managed) and register (when `auto_register`); false for a read-only check.
    pub apply: bool,
}

impl Gate<'_> {
    /// Gates a schema from a file under `subject`.
    pub async fn file(
        &self,
        subject: &str,
        event_types: Vec<String>,
        schema: &Arc<LoadedSchema>,
    ) -> Result<(SubjectReport, Option<Bound>), AvroError> {
        let level = self.config.level_for(subject);
        let registry_level = self.registry.level(subject).await?;
        let report = |outcome| SubjectReport {
            subject: subject.to_string(),
            event_types: event_types.clone(),
            origin: schema.origin.clone(),
            level,
            registry_level,
            outcome,
        };
        if registry_level != Some(level) {
            if !self.config.manage_compatibility {
                return Ok((
                    report(Outcome::LevelMismatch {
                        registry: registry_level,
                    }),
                    None,
                ));
            }
            if self.apply {
                self.registry.set_level(subject, level).await?;
            }
        }
        if let Some((id, version)) = self.registry.lookup(subject, schema).await? {
            return Ok((
                report(Outcome::Registered {
                    id,
                    version: Some(version),
                }),
                self.bind(subject, schema, id, Some(version)),
            ));
        }
        if let Compat::Incompatible(mut reasons) = self.registry.check_compatibility(subject, schema).await? {
            reasons.extend(self.explain(subject, schema, level).await?);
            if reasons.is_empty() {
                reasons.push("the registry gave no reason".into());
            }
            return Ok((report(Outcome::Incompatible { reasons }), None));
        }
        if !self.config.auto_register {
            return Ok((report(Outcome::Missing), None));
        }
        if !self.apply {
            return Ok((report(Outcome::Compatible), None));
        }
        match self.registry.register(subject, schema).await? {
            Registration::Refused(reasons) => Ok((report(Outcome::Incompatible { reasons }), None)),
            Registration::Id(id) => {
                let version = self.registry.lookup(subject, schema).await?.map(|(_, v)| v);
                Ok((
                    report(Outcome::Registered { id, version }),
                    self.bind(subject, schema, id, version),
                ))
            }
        }
    }

    /// Our own reasons, by field path, for what the registry refused: the change from the subject's latest
    /// version to `schema` at `level` (registries that answer only `{"is_compatible": false}` say nothing
    /// more). Empty when the latest version cannot be read or parsed on its own.
    async fn explain(
        &self,
        subject: &str,
        schema: &LoadedSchema,
        level: CompatibilityLevel,
    ) -> Result<Vec<String>, AvroError> {
        let Some(latest) = self.registry.version(subject, "latest").await? else {
            return Ok(Vec::new());
        };
        let Ok(old) = apache_avro::Schema::parse_str(&latest.schema) else {
            return Ok(Vec::new());
        };
        Ok(crate::explain::incompatibilities(&old, &schema.schema, level)
            .into_iter()
            .map(|r| format!("{r} [against version {}]", latest.version))
            .collect())
    }

    /// Takes the latest version of `subject` (a `latest` source).
    pub async fn latest(
        &self,
        subject: &str,
        event_types: Vec<String>,
    ) -> Result<(SubjectReport, Option<Bound>), AvroError> {
        let mut report = SubjectReport {
            subject: subject.to_string(),
            event_types,
            origin: "registry latest".into(),
            level: self.config.level_for(subject),
            registry_level: None,
            outcome: Outcome::Missing,
        };
        let Some(reg) = self.registry.version(subject, "latest").await? else {
            return Ok((report, None));
        };
        let origin = format!("{subject} version {} (id {})", reg.version, reg.id);
        let schema = LoadedSchema::parse(&reg.schema, origin.clone())
            .map_err(|detail| AvroError::RegistrySchema { what: origin, detail })?;
        report.outcome = Outcome::Registered {
            id: reg.id,
            version: Some(reg.version),
        };
        Ok((
            report,
            self.bind(subject, &Arc::new(schema), reg.id, Some(reg.version)),
        ))
    }

    fn bind(
        &self,
        subject: &str,
        schema: &Arc<LoadedSchema>,
        id: u32,
        version: Option<i32>,
    ) -> Option<Bound> {
        Some(Bound {
            schema: Arc::clone(schema),
            id,
            subject: subject.into(),
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: Outcome) -> SubjectReport {
        SubjectReport {
            subject: "com.example.A".into(),
            event_types: vec!["A".into()],
            origin: "schemas/A.avsc".into(),
            level: CompatibilityLevel::Full,
            registry_level: Some(CompatibilityLevel::Backward),
            outcome,
        }
    }

    #[test]
    fn report_passes_only_when_every_subject_does() {
        let ok = entry(Outcome::Registered {
            id: 3,
            version: Some(2),
        });
        let mut report = GateReport {
            subjects: vec![ok.clone(), entry(Outcome::Compatible)],
            deferred: vec![],
        };
        assert!(report.passed());
        assert!(report.to_string().contains("ok   com.example.A [FULL]"));
        assert!(report
            .to_string()
            .contains("registered, id 3, version 2 (registry level was BACKWARD)"));
        report.subjects.push(entry(Outcome::Incompatible {
            reasons: vec!["field f: type changed".into()],
        }));
        report.subjects.push(entry(Outcome::Missing));
        report.subjects.push(entry(Outcome::LevelMismatch {
            registry: Some(CompatibilityLevel::None),
        }));
        assert!(!report.passed());
        assert_eq!(report.failures().count(), 3);
        let text = report.to_string();
        assert!(text.contains("FAIL com.example.A [FULL]"), "{text}");
        assert!(
            text.contains("incompatible at level FULL: field f: type changed"),
            "{text}"
        );
        assert!(text.contains("auto_register is off"), "{text}");
        assert!(
            text.contains("the registry applies NONE but FULL is configured"),
            "{text}"
        );
    }
}
