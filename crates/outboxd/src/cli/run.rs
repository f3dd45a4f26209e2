//! `outboxd run`: the pipeline with its observability around it (metrics, health endpoints, lag sampling)
//! and signal handling (SIGTERM/SIGINT: finish or abort the open transaction, confirm, exit 0).

use super::config_file::redacted_toml;
use super::exit::Exit;
use outboxd::http::{self, Health};
use outboxd::metrics as m;
use outboxd::{FaultPlan, PipelineConfig, RunOptions};
use outboxd_kafka::SinkStats;
use std::sync::Arc;
use std::time::Duration;

/// `--print-config`: the effective configuration, secrets redacted.
pub fn print_config(config: &PipelineConfig) -> Exit {
    match redacted_toml(config) {
        Ok(text) => {
            print!("{text}");
            Exit::ok()
        }
        Err(e) => Exit::failed(format!("cannot print the configuration: {e}")),
    }
}

/// Runs the pipeline until a signal, then returns its exit.
pub async fn run(config: PipelineConfig) -> Exit {
    let shutdown = shutdown_signal();
    outboxd_wal::install_crypto_provider();
    let faults = match FaultPlan::from_env() {
        Ok(f) => f,
        Err(e) => return Exit::usage(format!("OUTBOXD_FAULT: {e}")),
    };
    let health = Health::new();
    let stats = Arc::new(SinkStats::default());
    let mut background = Vec::new();
    let listen = config.observability.listen.trim().to_string();
    if !listen.is_empty() {
        let addr = match listen.parse() {
            Ok(a) => a,
            Err(e) => {
                return Exit::usage(format!(
                    "observability.listen = {listen:?}: {e} (expected ip:port)"
                ))
            }
        };
        let handle = match m::install() {
            Ok(h) => h,
            Err(e) => return Exit::failed(e),
        };
        match http::serve(addr, handle, health.clone()).await {
            Ok((bound, task)) => {
                tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
                background.push(task);
            }
            Err(e) => {
                return Exit::usage(format!(
                    "cannot listen on {addr} (observability.listen): {e}; is another process using the port?"
                ))
            }
        }
        background.push(tokio::spawn(sample(config.clone(), stats.clone())));
    }
    tracing::info!(slot = %config.source.slot, pipeline = %config.pipeline_id(), "outboxd starting");
    let options = RunOptions {
        faults,
        stats,
        health: health.clone(),
    };
    let result = outboxd::run_with(config, shutdown, options).await;
    for task in background {
        task.abort();
    }
    match result {
        Ok(outcome) => {
            tracing::info!(
                checkpoint = %outcome.checkpoint,
                events = outcome.stats.events_produced,
                restarts = outcome.restarts,
                "outboxd stopped"
            );
            Exit::ok()
        }
        Err(e) if e.is_fenced() => {
            health.set_failed();
            Exit::fenced(format!(
                "{e}; another instance with the same transactional.id took over the stream"
            ))
        }
        Err(e) => {
            health.set_failed();
            Exit::failed(e.to_string())
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now (so that a signal arriving during start-up is not fatal),
/// and returns a future that resolves at the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the open transaction, then stopping"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the open transaction, then stopping"),
        }
    }
}

/// Copies the sink's counters into the metrics every second, and samples the slot's lag.
async fn sample(config: PipelineConfig, stats: Arc<SinkStats>) {
    let lag_every = Duration::from_millis(config.observability.lag_sample_interval_ms.max(100));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_lag = tokio::time::Instant::now() - lag_every;
    loop {
        tick.tick().await;
        let s = stats.snapshot();
        metrics::counter!(m::EVENTS_PRODUCED).absolute(s.events_produced);
        metrics::counter!(m::BYTES_PRODUCED).absolute(s.bytes_produced);
        metrics::counter!(m::KAFKA_TRANSACTIONS, "outcome" => "committed").absolute(s.txns_committed);
        metrics::counter!(m::KAFKA_TRANSACTIONS, "outcome" => "aborted").absolute(s.txns_aborted);
        for (reason, n) in &s.dead_letters_by_reason {
            metrics::counter!(m::DLQ_EVENTS, "reason" => *reason).absolute(*n);
        }
        metrics::gauge!(m::CONFIRMED_LSN).set(s.checkpoint_end_lsn.as_u64() as f64);
        if last_lag.elapsed() >= lag_every {
            last_lag = tokio::time::Instant::now();
            if let Ok(status) = outboxd_wal::admin::slot_status(&config.source).await {
                if let Some(d) = status.details {
                    if let Some(lag) = d.unconfirmed_wal_bytes {
                        metrics::gauge!(m::REPLICATION_LAG_BYTES).set(lag as f64);
                    }
                    metrics::gauge!(m::SLOT_ACTIVE).set(if d.active { 1.0 } else { 0.0 });
                }
            }
        }
    }
}
