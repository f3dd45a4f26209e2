//! The retention task: beside the pipeline, sweeps relayed rows older than `source.retention.max_age_s` out
//! of the outbox table (outboxd-wal's [`Retention`] states the argument). It waits until an attempt has read
//! or recorded the slot's origin (the [`RetentionBasis`]): without one it deletes nothing.

use crate::metrics as m;
use outboxd_wal::{Retention, RetentionBasis, SourceConfig};
use std::time::Duration;
use tokio::sync::watch;

/// Batches of one sweep at most.
const MAX_BATCHES_PER_SWEEP: usize = 100;

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
            let mut swept = 0;
            // Batches until one is not full (bounded, so that a changed basis is seen).
            for _ in 0..MAX_BATCHES_PER_SWEEP {
                match retention.delete_batch(&current).await {
                    Ok(n) => {
                        metrics::counter!(m::RETENTION_DELETED).increment(n);
                        swept += n;
                        if n < retention.batch_rows() as u64 {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention batch failed; trying again later");
                        open = None;
                        break;
                    }
                }
            }
            if swept > 0 {
                tracing::info!(deleted = swept, "retention: deleted relayed outbox rows");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = basis.changed() => if changed.is_err() { return },
        }
    }
}
