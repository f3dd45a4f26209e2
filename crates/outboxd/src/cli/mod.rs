//! The command line's parts: configuration loading, exit codes, logging, and one module per command.

pub mod check;
pub mod config_file;
pub mod dlq;
pub mod exit;
pub mod logging;
pub mod run;
pub mod schemas;
pub mod slot;

use outboxd::PipelineConfig;
use std::path::Path;

/// Loads the configuration from `path` and the process environment, then checks what can be checked
/// without any service. The message names the key and the file (or variable) at fault.
pub fn load_config(path: Option<&Path>) -> Result<PipelineConfig, String> {
    let mut config: PipelineConfig = config_file::load(path, std::env::vars()).map_err(|e| e.to_string())?;
    // Relative paths in the file mean relative to the file, wherever outboxd is started from.
    if let Some(dir) = path.and_then(Path::parent) {
        if config.avro.schema_dir.is_relative() {
            config.avro.schema_dir = dir.join(&config.avro.schema_dir);
        }
        if let Some(cert) = config.source.ssl_root_cert.as_mut().filter(|c| c.is_relative()) {
            *cert = dir.join(&*cert);
        }
    }
    config.validate().map_err(|e| {
        let origin = path.map_or_else(
            || "defaults and environment".to_string(),
            |p| p.display().to_string(),
        );
        format!("invalid config in {origin}: {e}")
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key path of a TOML table, as `section.sub.key`.
    fn key_paths(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) if !t.is_empty() => key_paths(t, &path, out),
                // An empty table (a map such as kafka.librdkafka) is a section of its own.
                toml::Value::Table(_) => out.push(format!("[{path}]")),
                _ => out.push(path),
            }
        }
    }

    fn repo_file(rel: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_example_config_loads_and_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/outboxd.toml");
        let config: PipelineConfig = config_file::load(Some(&path), []).expect("config/outboxd.toml loads");
        config.validate().expect("config/outboxd.toml is valid");
        // Unset options are not serialised: fill them so that their keys are checked too.
        let mut full = config.clone();
        full.pipeline_id = Some("p".into());
        full.source.password = Some("x".into());
        full.source.ssl_root_cert = Some("x".into());
        full.source.slot_busy_timeout_ms = Some(1);
        full.avro.registry_username = Some("x".into());
        full.avro.registry_password = Some("x".into());
        full.kafka.transactional_id = Some("x".into());
        full.kafka.routing.fixed_topic = Some("x".into());
        full.restart.max_restarts = Some(1);
        let mut keys = Vec::new();
        key_paths(&toml::Table::try_from(&full).unwrap(), "", &mut keys);
        let (example, reference) = (
            repo_file("config/outboxd.toml"),
            repo_file("docs/configuration.md"),
        );
        for key in &keys {
            if key.starts_with('[') {
                assert!(
                    example.contains(key.as_str()),
                    "config/outboxd.toml has no section {key}"
                );
                assert!(
                    reference.contains(&format!("`{key}`")),
                    "docs/configuration.md has no section {key}"
                );
                continue;
            }
            let leaf = key.rsplit('.').next().unwrap();
            assert!(
                example.contains(&format!("{leaf} = ")),
                "config/outboxd.toml does not show `{key}` (set or commented)"
            );
            assert!(
                reference.contains(&format!("`{leaf}`")),
                "docs/configuration.md does not list `{key}`"
            );
        }
        assert!(keys.len() > 40, "only {} keys found", keys.len());
    }
}
