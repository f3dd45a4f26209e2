//! The retention task: beside the pipeline, sweeps relayed rows older than `source.retention.max_age_s` out
//! of the outbox table (outboxd-wal's [`Retention`] states the argument). It waits until an attempt has read
//! or recorded the slot's origin (the [`RetentionBasis`]): without one it deletes nothing.

use crate::metrics as m;
use outboxd_wal::{Retention, RetentionBasis, SourceConfig};
use std::time::Duration;
use tokio::sync::watch;

/// Sweeps every `interval_ms` until dropped (the pipeline aborts it when it stops).
pub(crate) async fn run(config: SourceConfig, mut basis: watch::Receiver<Option<RetentionBasis>>) {
    let interval = Duration::from_millis(config.retention.interval_ms.max(10));
    let mut open: Option<(Retention, RetentionBasis)> = None;
    loop {
        let Some(current) = basis.borrow_and_update().clone() else {
            if basis.changed().await.is_err() {
                return;
            }
            continue;
        };
        if open.as_ref().is_none_or(|(_, b)| *b != current) {
            open = match Retention::open(&config, &current).await {
                Ok(r) => Some((r, current.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "retention: cannot connect or prepare; trying again later");
                    None
                }
            };
        }
        if let Some((retention, _)) = open.as_mut() {
            match retention.sweep(&current).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!(m::RETENTION_DELETED).increment(n);
                    tracing::info!(deleted = n, "retention: deleted relayed outbox rows");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention sweep failed; trying again later");
                    open = None;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = basis.changed() => if changed.is_err() { return },
        }
    }
}
