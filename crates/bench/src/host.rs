//! A stand-in for `outboxd run --config FILE` while the binary has no `run` command: the library pipeline
//! (`outboxd::run`) in a process of its own (`outboxd-bench --relay-host FILE`), so that its peak RSS is
//! measured apart from the bench, on a multi-thread runtime, stopped by SIGTERM. The config file is the same
//! TOML (without `OUTBOXD_*` environment overrides, which belong to the binary's config loader).

use anyhow::{Context, Result};
use std::path::Path;

/// Runs the pipeline until SIGTERM; errors when it halts.
pub fn main(config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let config: outboxd::PipelineConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            term.recv().await;
        };
        let outcome = outboxd::run(config, shutdown).await?;
        eprintln!("relay host: stopped: {outcome:?}");
        anyhow::Ok(())
    })
}
