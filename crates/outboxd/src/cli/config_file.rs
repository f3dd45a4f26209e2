//! Loading the configuration: one TOML file, then `OUTBOXD_<SECTION>__<KEY>` environment overrides, then
//! `<key>_file` secrets, then serde with unknown keys refused. Every error names the key and where it came from.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Environment variables with this prefix and a `__` in their name override configuration keys:
/// `OUTBOXD_SOURCE__PG_URL` sets `source.pg_url`, `OUTBOXD_KAFKA__BATCH__MAX_EVENTS` sets
/// `kafka.batch.max_events`. Variables without `__` (such as `OUTBOXD_PG_URL`) are not configuration.
pub const ENV_PREFIX: &str = "OUTBOXD_";

/// A configuration that cannot be used, with the key and the source at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("invalid config in {origin}: {message}")]
    Invalid { origin: String, message: String },
    /// An environment override could not be applied.
    #[error("invalid environment override {var}: {message}")]
    Env { var: String, message: String },
    /// A `<key>_file` secret could not be read.
    #[error("cannot read secret file {path} (from key {key}): {source}")]
    Secret {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads `T` from `path` (or from defaults alone when `None`), applying the environment `env`.
pub fn load<T>(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let origin = path.map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
    let mut table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.into(),
                source,
            })?;
            text.parse::<toml::Table>().map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                message: e.to_string(),
            })?
        }
        None => toml::Table::new(),
    };
    let defaults = toml::Table::try_from(T::default()).map_err(|e| ConfigError::Invalid {
        origin: "defaults".into(),
        message: e.to_string(),
    })?;
    let mut overridden = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut table, &defaults, &keys, &value).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        overridden.push(var);
    }
    resolve_secret_files(&mut table, "")?;
    let origin = if overridden.is_empty() {
        origin
    } else {
        format!("{origin} with {}", overridden.join(", "))
    };
    T::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
        origin,
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

/// Sets `keys` in `table` to `raw`, typed like the default value at that path (strings stay strings, so a
/// numeric password is not turned into a number); keys without a default take TOML literals for booleans,
/// arrays and inline tables, and strings otherwise.
fn set_path(
    table: &mut toml::Table,
    defaults: &toml::Table,
    keys: &[String],
    raw: &str,
) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut node = table;
    let mut default_node = Some(defaults);
    for k in parents {
        let entry = node
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{k}` is not a section"))?;
        default_node = default_node
            .and_then(|d| d.get(k))
            .and_then(toml::Value::as_table);
    }
    let default = default_node.and_then(|d| d.get(last));
    let value = match default {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{last}` expects an integer, got {raw:?}"))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{last}` expects a number, got {raw:?}"))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{last}` expects true or false, got {raw:?}"))?,
        ),
        _ => parse_literal(raw).unwrap_or_else(|| toml::Value::String(raw.to_string())),
    };
    // A table given for a section merges into it (OUTBOXD_KAFKA__LIBRDKAFKA='{ "sasl.username" = "me" }' adds
    // a key and keeps the file's others).
    match (node.get_mut(last), value) {
        (Some(toml::Value::Table(existing)), toml::Value::Table(new)) => existing.extend(new),
        (_, value) => {
            node.insert(last.clone(), value);
        }
    }
    Ok(())
}

fn parse_literal(raw: &str) -> Option<toml::Value> {
    let t = raw.trim();
    let structured = t == "true" || t == "false" || t.starts_with('[') || t.starts_with('{');
    if !structured {
        return None;
    }
    format!("v = {t}").parse::<toml::Table>().ok()?.remove("v")
}

/// Replaces every `<key>_file = "path"` with `<key> = <contents of path, trailing newline trimmed>`, so secrets
/// can come from mounted files (`password_file`), never from the config file itself.
fn resolve_secret_files(table: &mut toml::Table, prefix: &str) -> Result<(), ConfigError> {
    let file_keys: Vec<String> = table.keys().filter(|k| k.ends_with("_file")).cloned().collect();
    for fk in file_keys {
        let Some(toml::Value::String(path)) = table.get(&fk).cloned() else {
            continue;
        };
        let key = fk.trim_end_matches("_file").to_string();
        let full = format!("{prefix}{fk}");
        let secret = std::fs::read_to_string(&path).map_err(|source| ConfigError::Secret {
            key: full,
            path: path.clone().into(),
            source,
        })?;
        table.remove(&fk);
        table.insert(
            key,
            toml::Value::String(secret.trim_end_matches(['\n', '\r']).to_string()),
        );
    }
    for (k, v) in table.iter_mut() {
        if let toml::Value::Table(t) = v {
            resolve_secret_files(t, &format!("{prefix}{k}."))?;
        }
    }
    Ok(())
}

// One redaction for every place a URL or a configuration is printed (logs, errors, `--print-config`,
// `check`): outboxd_core::redact.
pub use outboxd_core::redact::{is_secret_key, redact_url};

/// The configuration as TOML with every secret replaced by `***` (for `--print-config` and logs).
pub fn redacted_toml<T: Serialize>(config: &T) -> Result<String, toml::ser::Error> {
    let mut value = toml::Table::try_from(config)?;
    redact_table(&mut value);
    toml::to_string_pretty(&value)
}

fn redact_table(table: &mut toml::Table) {
    for (k, v) in table.iter_mut() {
        match v {
            toml::Value::Table(t) => redact_table(t),
            toml::Value::String(s) if is_secret_key(k) => *s = "***".into(),
            toml::Value::String(s) if k.ends_with("url") || s.contains("://") => *s = redact_url(s),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
