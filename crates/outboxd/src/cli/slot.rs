//! `outboxd slot create|drop|status`: the replication slot, managed from the configuration's `[source]`.

use super::exit::Exit;
use outboxd::PipelineConfig;
use outboxd_wal::admin;

/// Creates the slot (and the publication when `source.create_publication` allows it).
pub async fn create(config: &PipelineConfig) -> Exit {
    match admin::create_slot(&config.source).await {
        Ok(created) => {
            println!(
                "created slot {} at {} (publication {}{})",
                created.slot,
                created.consistent_point,
                created.publication,
                if created.publication_created {
                    ", created"
                } else {
                    ", existing"
                }
            );
            Exit::ok()
        }
        Err(e) => Exit::failed(e.to_string()),
    }
}

/// Drops the slot, only with `--yes` and never while it is active.
pub async fn drop(config: &PipelineConfig, yes: bool) -> Exit {
    if !yes {
        return Exit::usage(format!(
            "refusing to drop slot {} without --yes.\n{}",
            config.source.slot,
            admin::DROP_SLOT_WARNING
        ));
    }
    eprintln!("warning: {}", admin::DROP_SLOT_WARNING);
    match admin::drop_slot(&config.source).await {
        Ok(dropped) => {
            match dropped.confirmed_flush_lsn {
                Some(lsn) => println!("dropped slot {} (its confirmed position was {lsn})", dropped.slot),
                None => println!("dropped slot {}", dropped.slot),
            }
            Exit::ok()
        }
        Err(e) => Exit::failed(e.to_string()),
    }
}

/// Prints the slot's state: active pid and client, confirmed LSN, retained WAL.
pub async fn status(config: &PipelineConfig) -> Exit {
    match admin::slot_status(&config.source).await {
        Ok(status) => {
            println!("{status}");
            if status.exists() {
                Exit::ok()
            } else {
                Exit::check_failed(format!(
                    "slot {} does not exist: `outboxd slot create`, or let `outboxd run` create it \
                     (source.create_slot = true)",
                    config.source.slot
                ))
            }
        }
        Err(e) => Exit::failed(e.to_string()),
    }
}
