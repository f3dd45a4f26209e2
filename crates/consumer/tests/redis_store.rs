//! The Redis TTL store, with a projection written outside any transaction (what the Redis store is for).
//! Under SIGKILLs it absorbs the redeliveries of events it recorded; an event killed between its effect and
//! its `SET` is applied again (at most one per event in flight per kill: the store's documented weakness).
//! Past the TTL it forgets: a replay of the topic applies every event again.

mod support;

use outboxd_consumer::{ConsumerConfig, ConsumerStats, StoreConfig};
use outboxd_testkit::kafka::client_config;
use outboxd_testkit::wait_until;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::child::{ChildConsumer, ChildLog};
use support::projection::{audit, count, distinct, Projection};
use support::{redis_url, World, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the consumer process of the kill tests, started by them"]
async fn consumer_child() {
    support::child::child_main().await;
}

fn redis_config(world: &World, ttl_secs: u64) -> ConsumerConfig {
    ConsumerConfig {
        store: StoreConfig::Redis {
            url: redis_url(),
            ttl_secs,
        },
        ..world.consumer_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_absorbs_redeliveries_of_recorded_events_under_sigkill() {
    const EVENTS: usize = 5_000;
    const KILLS: usize = 10;
    let started = Instant::now();
    let world = World::new(4).await;
    let relay = world.spawn_relay();
    let mut config = redis_config(&world, 3_600);
    config.instance_id = Some("redis-kill-0".into());
    let log = ChildLog::new("kill_redis");
    let killing = AtomicBool::new(true);
    let writer = world.feed("r", EVENTS, 100, 2_000, &killing);
    let killer = async {
        let mut rng = rand::rngs::StdRng::from_entropy();
        for _ in 0..KILLS {
            let before = count(&world.db.client).await;
            let mut child = ChildConsumer::spawn(&config, "redis", &log.path, Some(&world.db.url));
            child
                .wait_applying(&log, "the consumer to apply events", || async {
                    count(&world.db.client).await > before
                })
                .await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await; // a random kill time
            child.kill().await;
        }
        killing.store(false, Ordering::Relaxed);
        KILLS
    };
    let (ids, kills) = tokio::join!(writer, killer);
    let total = ids.len() as i64;
    let mut child = ChildConsumer::spawn(&config, "redis", &log.path, Some(&world.db.url));
    wait_until("every event applied", WAIT, || async {
        (distinct(&world.db.client).await >= total).then_some(())
    })
    .await;
    assert!(child.stop().await.success(), "{}", log.tail(40));
    relay.stop().await;

    let a = audit(&world.db.client, &ids).await;
    assert!(a.missing.is_empty(), "{} events never applied", a.missing.len());
    assert!(a.unexpected.is_empty(), "{:?}", a.unexpected);
    let absorbed = log.count("duplicate skipped");
    let repeated: i64 = a.duplicates.values().map(|n| n - 1).sum();
    assert!(total >= EVENTS as i64, "only {total} events");
    assert!(absorbed > 0, "no redelivery was absorbed by Redis");
    let bound = (kills * config.max_in_flight) as i64;
    assert!(
        repeated <= bound,
        "{repeated} repeated effects: more than one per event in flight per kill ({bound})"
    );
    eprintln!(
        "Redis store: {total} events, {kills} SIGKILLs, {absorbed} redeliveries absorbed, {repeated} effects \
         repeated (killed between effect and SET), in {:?}",
        started.elapsed()
    );
}

/// Commits offset 0 of every partition for the group (no member may be running).
async fn rewind(world: &World, partitions: i32) {
    let (bootstrap, topic, group) = (
        world.services.kafka_bootstrap.clone(),
        world.topic.clone(),
        world.group.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&bootstrap)
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Offset(0)).unwrap();
        }
        c.commit(&tpl, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
}

/// Runs the consumer in-process until `done(stats)`, then stops it.
async fn consume_until(world: &World, config: &ConsumerConfig, what: &str, done: impl Fn(u64, u64) -> bool) {
    let stats = Arc::new(ConsumerStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = Projection {
        direct: Some(tokio::sync::Mutex::new(world.db.connect().await)),
        instance: "ttl".into(),
    };
    let task = tokio::spawn(outboxd_consumer::run_with_stats(
        config.clone(),
        handler,
        async move {
            let _ = stopped.await;
        },
        Arc::clone(&stats),
    ));
    wait_until(what, WAIT, || async {
        let s = stats.snapshot();
        done(s.applied, s.duplicates).then_some(())
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_skips_a_replay_within_the_ttl_and_applies_it_again_past_it() {
    const EVENTS: usize = 20;
    let world = World::new(1).await;
    let relay = world.spawn_relay();
    let ids = world.insert_orders("t", 0..EVENTS, 5, 4).await;
    world.until_relayed(EVENTS).await;
    relay.stop().await;
    let config = redis_config(&world, 8);
    let n = EVENTS as u64;
    consume_until(&world, &config, "the first pass", |applied, _| applied >= n).await;
    assert_eq!(count(&world.db.client).await, EVENTS as i64);

    // Within the TTL: the replay is skipped whole.
    rewind(&world, 1).await;
    consume_until(&world, &config, "the replay within the TTL", |_, dup| dup >= n).await;
    assert_eq!(
        count(&world.db.client).await,
        EVENTS as i64,
        "no effect repeated within the TTL"
    );

    // Past the TTL the ids are gone from Redis, and the same replay applies everything again.
    let pattern = format!("outboxd-consumer:{}:*", world.group);
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), EVENTS, "one key per event id");
    wait_until(
        "the TTL to pass (Redis expires the ids)",
        Duration::from_secs(30),
        || {
            let mut conn = conn.clone();
            let pattern = pattern.clone();
            async move {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                keys.is_empty().then_some(())
            }
        },
    )
    .await;
    rewind(&world, 1).await;
    consume_until(&world, &config, "the replay past the TTL", |applied, _| {
        applied >= n
    })
    .await;
    let a = audit(&world.db.client, &ids).await;
    assert_eq!(
        a.duplicates.len(),
        EVENTS,
        "past the TTL every event is applied a second time"
    );
    assert!(a.duplicates.values().all(|&c| c == 2), "{:?}", a.duplicates);
}
