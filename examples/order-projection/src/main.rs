//! order-projection: an example service built on outboxd-consumer. It reads the demo's `OrderCreated` and
//! `OrderPaid` events from outboxd's topic, and keeps one row per order in `order_projection`, with the
//! Postgres inbox: each event's change is applied exactly once, whatever crashes or redeliveries.
//!
//! ```text
//!  outbox.event.order ──outboxd-consumer (read_committed, Avro via the registry, inbox)──▶ order_projection
//!                       └─ poison / failing events ──▶ <dlq_topic>
//! ```
//!
//! Usage: `order-projection --config examples/order-projection/consumer.toml [--topic T] [--pg-url URL]
//! [--group G] [--dlq-topic T] [--expect N] [--metrics-listen ADDR]`. It stops on SIGTERM / Ctrl-C, or with
//! `--expect N` once N events are done (applied, skipped as duplicates or dead-lettered), printing the table.

mod projection;

use anyhow::Context;
use clap::Parser;
use outboxd_consumer::{ConsumerConfig, ConsumerStats, StoreConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
#[command(
    name = "order-projection",
    about = "Projects OrderCreated / OrderPaid events into a table"
)]
struct ProjectionArgs {
    /// The consumer configuration (TOML, outboxd_consumer::ConsumerConfig).
    #[arg(long)]
    config: std::path::PathBuf,
    /// Topics to read, replacing `topics` of the file.
    #[arg(long)]
    topic: Vec<String>,
    /// The database (projection and inbox), replacing the store's `pg_url`.
    #[arg(long)]
    pg_url: Option<String>,
    /// The consumer group, replacing `group_id`.
    #[arg(long)]
    group: Option<String>,
    /// The dead-letter topic, replacing `dlq_topic`.
    #[arg(long)]
    dlq_topic: Option<String>,
    /// Kafka bootstrap servers, replacing `bootstrap_servers`.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Registry URL, replacing `registry_url`.
    #[arg(long)]
    registry: Option<String>,
    /// Stop once this many events are done and print the projection.
    #[arg(long)]
    expect: Option<u64>,
    /// With --expect: give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Serve Prometheus metrics on this address (GET /metrics), e.g. 127.0.0.1:9465.
    #[arg(long)]
    metrics_listen: Option<String>,
}

fn load(args: &ProjectionArgs) -> anyhow::Result<ConsumerConfig> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut c: ConsumerConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", args.config.display()))?;
    if !args.topic.is_empty() {
        c.topics = args.topic.clone();
    }
    if let (Some(url), StoreConfig::PostgresInbox { pg_url, .. }) = (&args.pg_url, &mut c.store) {
        *pg_url = url.clone();
    }
    let set = |field: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            *field = v.clone();
        }
    };
    set(&mut c.group_id, &args.group);
    set(&mut c.dlq_topic, &args.dlq_topic);
    set(&mut c.bootstrap_servers, &args.bootstrap);
    set(&mut c.registry_url, &args.registry);
    Ok(c)
}

/// A minimal `GET /metrics` endpoint.
async fn serve_metrics(addr: &str) -> anyhow::Result<()> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let body = handle.render();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(())
}

async fn print_projection(pg_url: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(pg_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT order_id, status, coalesce(customer_id, ''), coalesce(currency, ''), coalesce(items, 0), \
             coalesce(payment_method, ''), events FROM order_projection ORDER BY order_id",
            &[],
        )
        .await?;
    println!("order_projection ({} rows):", rows.len());
    println!(
        "  {:<38} {:<8} {:<8} {:<4} {:>5} {:<8} {:>6}",
        "order_id", "status", "customer", "cur", "items", "paid by", "events"
    );
    for r in rows {
        let (id, status, customer, currency, items, method, events): (
            String,
            String,
            String,
            String,
            i32,
            String,
            i32,
        ) = (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        );
        println!("  {id:<38} {status:<8} {customer:<8} {currency:<4} {items:>5} {method:<8} {events:>6}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn,librdkafka=off".into()),
        )
        .init();
    let args = ProjectionArgs::parse();
    let config = load(&args)?;
    let StoreConfig::PostgresInbox { pg_url, .. } = &config.store else {
        anyhow::bail!(
            "order-projection writes its table in the inbox transaction: use store.kind = \"postgres_inbox\""
        );
    };
    let pg_url = pg_url.clone();
    {
        let (client, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
            .await
            .with_context(|| "connecting to the projection's database")?;
        tokio::spawn(conn);
        client
            .batch_execute(projection::DDL)
            .await
            .context("creating order_projection")?;
    }
    if let Some(addr) = &args.metrics_listen {
        serve_metrics(addr).await?;
    }
    let stats = Arc::new(ConsumerStats::default());
    let expect = args.expect;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let watched = Arc::clone(&stats);
    let shutdown = async move {
        let done = async {
            match expect {
                Some(n) => loop {
                    let s = watched.snapshot();
                    if s.applied + s.duplicates + s.dead_lettered >= n
                        || tokio::time::Instant::now() >= deadline
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await; // polling the counters
                },
                None => std::future::pending().await,
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = done => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    outboxd_consumer::run_with_stats(config, projection::OrderProjection, shutdown, Arc::clone(&stats))
        .await?;
    let s = stats.snapshot();
    println!(
        "order-projection: {} applied, {} duplicates skipped, {} dead-lettered, {} retries",
        s.applied, s.duplicates, s.dead_lettered, s.retries
    );
    if let Some(n) = expect {
        print_projection(&pg_url).await?;
        let done = s.applied + s.duplicates + s.dead_lettered;
        anyhow::ensure!(
            done >= n,
            "only {done} of the {n} expected events arrived within {}s",
            args.timeout_secs
        );
    }
    Ok(())
}
