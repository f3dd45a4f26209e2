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
