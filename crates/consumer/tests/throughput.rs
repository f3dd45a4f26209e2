//! Consumer throughput, Postgres inbox and Redis store, on events already in the topic (outboxd relayed them
//! first): the time from the consumer's start until every event is applied. Prints events/s (the figures in
//! docs/consumers.md come from `cargo test --release -p outboxd-consumer --test throughput -- --nocapture`);
//! asserts only that every event was applied once.

mod support;

use outboxd_consumer::{ConsumerConfig, ConsumerStats, StoreConfig};
use outboxd_testkit::wait_until;
use std::sync::Arc;
use std::time::Instant;
use support::projection::{audit, Projection};
use support::{redis_url, World, WAIT};

const EVENTS: usize = 5_000;

async fn measure(world: &World, config: ConsumerConfig, direct: bool, ids: &[String]) -> f64 {
    let stats = Arc::new(ConsumerStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = Projection {
        direct: if direct {
            Some(tokio::sync::Mutex::new(world.db.connect().await))
        } else {
            None
        },
        instance: "bench".into(),
    };
    let started = Instant::now();
    let task = tokio::spawn(outboxd_consumer::run_with_stats(
        config,
        handler,
        async move {
            let _ = stopped.await;
        },
        Arc::clone(&stats),
    ));
    wait_until("every event applied", WAIT, || async {
        (stats.snapshot().applied >= EVENTS as u64).then_some(())
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    let a = audit(&world.db.client, ids).await;
    assert!(
        a.missing.is_empty() && a.duplicates.is_empty(),
        "{} missing, {} duplicated",
        a.missing.len(),
        a.duplicates.len()
    );
    EVENTS as f64 / secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_throughput_with_each_store() {
    let mut results = Vec::new();
    for store in ["postgres_inbox", "redis"] {
        let world = World::new(4).await;
        let relay = world.spawn_relay();
        let ids = world.insert_orders("b", 0..EVENTS, 500, 400).await;
        world.until_relayed(EVENTS).await;
        relay.stop().await;
        let mut config = world.consumer_config();
        if store == "redis" {
            config.store = StoreConfig::Redis {
                url: redis_url(),
                ttl_secs: 3_600,
            };
        }
        let rate = measure(&world, config, store == "redis", &ids).await;
        results.push((store, rate));
    }
    for (store, rate) in results {
        eprintln!("consumer throughput, {store}: {rate:.0} events/s ({EVENTS} events, 4 partitions, max_in_flight 8)");
    }
}
