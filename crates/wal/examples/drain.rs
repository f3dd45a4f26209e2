//! Drains N outbox events from a slot through the WAL source and prints the rate, confirming each
//! transaction as a sink would. For comparing against `pg_recvlogical` on the same data:
//!
//! ```text
//! cargo run --release -p outboxd-wal --example drain -- PG_URL SLOT PUBLICATION ROWS [TABLE]
//! ```
//!
//! The slot and publication are created when missing (the publication for TABLE, default public.outbox); rows
//! inserted before the slot exists are not in it. Timing starts at the first event.

use outboxd_core::{Lsn, TxEvent};
use outboxd_wal::{Source, SourceConfig};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pg_url, slot, publication, rows, rest @ ..] = args.as_slice() else {
        eprintln!("usage: drain PG_URL SLOT PUBLICATION ROWS [TABLE]");
        std::process::exit(2);
    };
    let rows: u64 = rows.parse()?;
    let config = SourceConfig {
        pg_url: pg_url.clone(),
        slot: slot.clone(),
        publication: publication.clone(),
        table: rest.first().cloned().unwrap_or_else(|| "public.outbox".into()),
        ..SourceConfig::default()
    };
    let (handle, mut rx) = Source::start(config, Lsn::ZERO).await?;
    let (mut events, mut txns, mut bytes) = (0u64, 0u64, 0u64);
    let mut started = None;
    while events < rows {
        match rx.recv().await {
            Some(TxEvent::Begin(_)) => {
                started.get_or_insert_with(Instant::now);
            }
            Some(TxEvent::Event(e)) => {
                events += 1;
                bytes += e.payload.map_or(0, |p| p.len() as u64);
            }
            Some(TxEvent::Commit(c)) => {
                txns += 1;
                handle.confirm(c.end_lsn);
            }
            None => break,
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64()).max(1e-9);
    println!(
        "{events} rows in {txns} transactions in {secs:.2} s: {:.0} rows/s, {:.0} transactions/s, {:.1} MB/s of payload",
        events as f64 / secs,
        txns as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    println!("{:?}", handle.progress().stats);
    handle.shutdown().await?;
    Ok(())
}
