//! The schema-registry REST calls the gate and the encoder need, over one reqwest client.
//!
//! Every answer is classified here: transport errors, timeouts, 5xx, 408 and 429 are retriable
//! ([`AvroError::Unreachable`], [`AvroError::RegistryUnavailable`]); the "not found" answers each call expects
//! become `None`/variants; any other 4xx is [`AvroError::RegistryRejected`]. Decisions use the HTTP status
//! and `error_code`, never message text (registries word them differently).

use crate::config::{AvroConfig, CompatibilityLevel};
use crate::error::AvroError;
use crate::schemas::{normalized, LoadedSchema};
use reqwest::{Method, Url};
use serde_json::{json, Value as Json};
use std::time::Duration;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A schema version as the registry holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// Global schema id.
    pub id: u32,
    /// Version under the subject.
    pub version: i32,
    /// The schema text.
    pub schema: String,
}

/// The registry's verdict on a candidate schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compat {
    /// Compatible with the versions the subject's level compares against.
    Compatible,
    /// The subject has no version yet: anything is compatible.
    NoVersions,
    /// Refused, with the registry's reasons.
    Incompatible(Vec<String>),
}

/// The outcome of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Registered (or already there): its id.
    Id(u32),
    /// Refused as incompatible or invalid, with the registry's reasons.
    Refused(Vec<String>),
}

/// One answer: status and JSON body (a non-JSON body becomes a JSON string).
#[derive(Debug)]
struct Answer {
    what: String,
    status: u16,
    body: Json,
}

impl Answer {
    fn error_code(&self) -> Option<i64> {
        self.body.get("error_code").and_then(Json::as_i64)
    }

    fn message(&self) -> String {
        match self.body.get("message").and_then(Json::as_str) {
            Some(m) => m.to_string(),
            None => self.body.to_string(),
        }
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn rejected(self) -> AvroError {
        AvroError::RegistryRejected {
            error_code: self.error_code(),
            message: self.message(),
            what: self.what,
            status: self.status,
        }
    }

    fn bad(&self, detail: &str) -> AvroError {
        AvroError::BadResponse {
            what: self.what.clone(),
            detail: format!("{detail}: {}", self.body),
        }
    }

    fn id(&self) -> Result<u32, AvroError> {
        let id = self
            .body
            .get("id")
            .and_then(Json::as_u64)
            .ok_or_else(|| self.bad("no numeric id"))?;
        u32::try_from(id).map_err(|_| self.bad("id out of range"))
    }

    fn registered(&self) -> Result<Registered, AvroError> {
        let version = self
            .body
            .get("version")
            .and_then(Json::as_i64)
            .ok_or_else(|| self.bad("no version"))?;
        let schema = self
            .body
            .get("schema")
            .and_then(Json::as_str)
            .ok_or_else(|| self.bad("no schema"))?;
        Ok(Registered {
            id: self.id()?,
            version: i32::try_from(version).map_err(|_| self.bad("version out of range"))?,
            schema: schema.to_string(),
        })
    }

    /// The `messages` the registry listed (Confluent's `verbose=true`); empty when it gave none.
    fn listed_messages(&self) -> Vec<String> {
        match self.body.get("messages").and_then(Json::as_array) {
            Some(list) => list
                .iter()
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                .collect(),
            None => Vec::new(),
        }
    }

    fn messages(&self) -> Vec<String> {
        match self.body.get("messages").and_then(Json::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                .collect(),
            _ => vec![self.message()],
        }
    }
}

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct Registry {
    client: reqwest::Client,
    base: Url,
    auth: Option<(String, Option<String>)>,
}

impl Registry {
    /// A client for `config.registry_url`, with its credentials and request timeout.
    pub fn new(config: &AvroConfig) -> Result<Registry, AvroError> {
        let base = Url::parse(&config.registry_url).map_err(|e| {
            // Not echoed: an unparseable URL may still hold a password.
            AvroError::Config(format!(
                "registry_url is not a URL ({e}); expected e.g. http://registry:8081"
            ))
        })?;
        if base.cannot_be_a_base() {
            return Err(AvroError::Config(format!(
                "registry_url {} cannot be a base URL; expected e.g. http://registry:8081",
                redacted(&base)
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms.max(1)))
            .build()
            .map_err(|e| AvroError::Config(format!("cannot build the registry HTTP client: {e}")))?;
        let auth = config
            .registry_username
            .clone()
            .map(|u| (u, config.registry_password.clone()));
        Ok(Registry { client, base, auth })
    }

    /// The registry's base URL.
    pub fn url(&self) -> String {
        redacted(&self.base)
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<(&str, &str)>,
        body: Option<&Json>,
    ) -> Result<Answer, AvroError> {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if let Some((k, v)) = query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let what = format!("{method} {}", url.path());
        let mut req = self.client.request(method, url).header("Accept", CONTENT_TYPE);
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, password.as_ref());
        }
        if let Some(b) = body {
            req = req.header("Content-Type", CONTENT_TYPE).body(b.to_string());
        }
        // Neither the base URL nor reqwest's message (which quotes the URL) may carry the credentials out.
        let unreachable = |e: reqwest::Error| AvroError::Unreachable {
            url: redacted(&self.base),
            what: what.clone(),
            detail: error_chain(&e.without_url()),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(unreachable)?;
        let body = serde_json::from_str(&text).unwrap_or(Json::String(text));
        let answer = Answer { what, status, body };
        if retriable_status(status) {
            return Err(AvroError::RegistryUnavailable {
                error_code: answer.error_code(),
                message: answer.message(),
                what: answer.what,
                status,
            });
        }
        Ok(answer)
    }

    /// Checks that the registry answers (`GET /config`), so that a wrong URL or a registry that is away shows
    /// at start even when every subject waits for the first use of a topic.
    pub async fn ping(&self) -> Result<(), AvroError> {
        let a = self.call(Method::GET, &["config"], None, None).await?;
        if a.ok() {
            Ok(())
        } else {
            Err(a.rejected())
        }
    }

    /// The level the registry applies to `subject` (its own, else the global one).
    pub async fn level(&self, subject: &str) -> Result<Option<CompatibilityLevel>, AvroError> {
        let a = self
            .call(
                Method::GET,
                &["config", subject],
                Some(("defaultToGlobal", "true")),
                None,
            )
            .await?;
        let a = if a.status == 404 {
            self.call(Method::GET, &["config"], None, None).await?
        } else {
            a
        };
        if !a.ok() {
            return Err(a.rejected());
        }
        let level = a
            .body
            .get("compatibilityLevel")
            .or_else(|| a.body.get("compatibility"))
            .and_then(Json::as_str);
        Ok(level.and_then(|l| l.parse().ok()))
    }

    /// Sets `subject`'s level (`PUT /config/{subject}`).
    pub async fn set_level(&self, subject: &str, level: CompatibilityLevel) -> Result<(), AvroError> {
        let body = json!({ "compatibility": level.as_str() });
        let a = self
            .call(Method::PUT, &["config", subject], None, Some(&body))
            .await?;
        if a.ok() {
            Ok(())
        } else {
            Err(a.rejected())
        }
    }

    /// Asks whether `schema` could be registered under `subject` (checked against the latest version, or all
    /// of them for transitive levels).
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &LoadedSchema,
    ) -> Result<Compat, AvroError> {
        let body = json!({ "schema": schema.text, "schemaType": "AVRO" });
        let path = ["compatibility", "subjects", subject, "versions", "latest"];
        let a = self
            .call(Method::POST, &path, Some(("verbose", "true")), Some(&body))
            .await?;
        match a.status {
            404 => Ok(Compat::NoVersions),
            409 | 422 => Ok(Compat::Incompatible(a.messages())),
            _ if a.ok() => match a.body.get("is_compatible").and_then(Json::as_bool) {
                Some(true) => Ok(Compat::Compatible),
                Some(false) => Ok(Compat::Incompatible(a.listed_messages())),
                None => Err(a.bad("no is_compatible")),
            },
            _ => Err(a.rejected()),
        }
    }

    /// Registers `schema` under `subject` (idempotent: an existing identical schema answers its id).
    pub async fn register(&self, subject: &str, schema: &LoadedSchema) -> Result<Registration, AvroError> {
        let body = json!({ "schema": schema.text, "schemaType": "AVRO" });
        let a = self
            .call(
                Method::POST,
                &["subjects", subject, "versions"],
                None,
                Some(&body),
            )
            .await?;
        match a.status {
            409 | 422 => Ok(Registration::Refused(a.messages())),
            _ if a.ok() => Ok(Registration::Id(a.id()?)),
            _ => Err(a.rejected()),
        }
    }

    /// A version of `subject` (`"latest"` or a number); `None` when the subject or version does not exist.
    pub async fn version(&self, subject: &str, version: &str) -> Result<Option<Registered>, AvroError> {
        let a = self
            .call(
                Method::GET,
                &["subjects", subject, "versions", version],
                None,
                None,
            )
            .await?;
        match a.status {
            404 => Ok(None),
            _ if a.ok() => a.registered().map(Some),
            _ => Err(a.rejected()),
        }
    }

    /// The versions of `subject`, oldest first; empty when the subject does not exist.
    pub async fn versions(&self, subject: &str) -> Result<Vec<i32>, AvroError> {
        let a = self
            .call(Method::GET, &["subjects", subject, "versions"], None, None)
            .await?;
        match a.status {
            404 => Ok(Vec::new()),
            _ if a.ok() => {
                let list = a.body.as_array().ok_or_else(|| a.bad("not a list of versions"))?;
                Ok(list
                    .iter()
                    .filter_map(|v| v.as_i64().and_then(|v| i32::try_from(v).ok()))
                    .collect())
            }
            _ => Err(a.rejected()),
        }
    }

    /// The schema text registered with `id`; `None` when no schema has it.
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<String>, AvroError> {
        let a = self
            .call(Method::GET, &["schemas", "ids", &id.to_string()], None, None)
            .await?;
        match a.status {
            404 => Ok(None),
            _ if a.ok() => {
                let s = a
                    .body
                    .get("schema")
                    .and_then(Json::as_str)
                    .ok_or_else(|| a.bad("no schema"))?;
                Ok(Some(s.to_string()))
            }
            _ => Err(a.rejected()),
        }
    }

    /// Finds `schema` among `subject`'s versions: `(id, version)`, or `None` if it is not registered there.
    ///
    /// Uses `POST /subjects/{subject}`; registries that do not offer it (rivven answers 405) are searched by
    /// listing the versions, newest first, and comparing whole normalized schemas.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &LoadedSchema,
    ) -> Result<Option<(u32, i32)>, AvroError> {
        let body = json!({ "schema": schema.text, "schemaType": "AVRO" });
        let a = self
            .call(Method::POST, &["subjects", subject], None, Some(&body))
            .await?;
        match a.status {
            404 => return Ok(None),
            405 | 501 => {}
            _ if a.ok() => {
                let version = a
                    .body
                    .get("version")
                    .and_then(Json::as_i64)
                    .ok_or_else(|| a.bad("no version"))?;
                return Ok(Some((
                    a.id()?,
                    i32::try_from(version).map_err(|_| a.bad("version out of range"))?,
                )));
            }
            _ => return Err(a.rejected()),
        }
        let wanted = schema.normalized();
        for v in self.versions(subject).await?.into_iter().rev() {
            let Some(reg) = self.version(subject, &v.to_string()).await? else {
                continue;
            };
            let same = LoadedSchema::parse(&reg.schema, "").is_ok_and(|s| normalized(&s.schema) == wanted);
            if same {
                return Ok(Some((reg.id, reg.version)));
            }
        }
        Ok(None)
    }
}

/// Statuses that say "try again later": server errors, request timeout, too many requests.
fn retriable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// An error with its sources, on one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The URL with any password replaced by `***`, for messages (the one redaction of outboxd_core).
fn redacted(url: &Url) -> String {
    outboxd_core::redact::redact_url(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_split_into_retriable_and_not() {
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(retriable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 405, 409, 422] {
            assert!(!retriable_status(s), "{s}");
        }
    }

    #[test]
    fn answers_expose_error_code_messages_and_ids() {
        let a = Answer {
            what: "POST /x".into(),
            status: 409,
            body: json!({"error_code": 409, "message": "m"}),
        };
        assert_eq!(
            (a.error_code(), a.message(), a.messages()),
            (Some(409), "m".to_string(), vec!["m".to_string()])
        );
        let a = Answer {
            what: "POST /c".into(),
            status: 200,
            body: json!({"is_compatible": false, "messages": ["a", "b"]}),
        };
        assert_eq!(a.messages(), ["a", "b"]);
        let a = Answer {
            what: "GET /v".into(),
            status: 200,
            body: json!({"id": 7, "version": 2, "schema": "\"int\""}),
        };
        assert_eq!(
            a.registered().unwrap(),
            Registered {
                id: 7,
                version: 2,
                schema: "\"int\"".into()
            }
        );
        let a = Answer {
            what: "GET /v".into(),
            status: 200,
            body: json!({"id": -1}),
        };
        assert!(matches!(a.id(), Err(AvroError::BadResponse { .. })));
        let rejected = Answer {
            what: "GET /v".into(),
            status: 401,
            body: json!("unauthorized"),
        }
        .rejected();
        assert!(!rejected.is_retriable());
        assert!(rejected.to_string().contains("401"), "{rejected}");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        let c = AvroConfig {
            registry_url: "not a url".into(),
            ..Default::default()
        };
        assert!(matches!(Registry::new(&c), Err(AvroError::Config(_))));
        let c = AvroConfig {
            registry_url: "mailto:x@y".into(),
            ..Default::default()
        };
        assert!(matches!(Registry::new(&c), Err(AvroError::Config(_))));
    }
}
