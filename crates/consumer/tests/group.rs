//! Two instances of one service in one consumer group share the partitions; one of them is SIGKILLed again
//! and again (each kill and each restart is a rebalance: the survivor takes the partitions over, then gives
//! some back). Every event's effect is in the projection exactly once and in order per aggregate, and both
//! instances did part of the work.

mod support;

use outboxd_testkit::wait_until;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::child::{describe, ChildConsumer, ChildLog};
use support::projection::{audit, distinct};
use support::{World, WAIT};

const KILLS: usize = 5;
const MIN_EVENTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the consumer process of the kill tests, started by them"]
async fn consumer_child() {
    support::child::child_main().await;
}

async fn applied_by(world: &World, instance: &str) -> i64 {
    world
        .db
        .client
        .query_one("SELECT count(*) FROM effects WHERE instance = $1", &[&instance])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_with_one_sigkilled_repeatedly_apply_every_event_exactly_once() {
    let started = Instant::now();
    let world = World::new(6).await;
    let relay = world.spawn_relay();
    // Dynamic membership: every kill and restart rebalances the group.
    let config = world.consumer_config();
    let log = ChildLog::new("group");
    let a = RefCell::new(ChildConsumer::spawn(&config, "a", &log.path, None));
    let killing = AtomicBool::new(true);
    let writer = async {
        let mut ids = Vec::new();
        let mut i = 0;
        while killing.load(Ordering::Relaxed) || ids.len() < MIN_EVENTS {
            ids.extend(world.insert_orders("g", i..i + 500, 50, 60).await);
            i += 500;
            assert!(i <= 200_000, "the kills took far too long");
            tokio::time::sleep(Duration::from_millis(500)).await; // pacing the writer, not a wait
        }
        ids
    };
    let killer = async {
        let mut rng = rand::rngs::StdRng::from_entropy();
        for _ in 0..KILLS {
            let before = applied_by(&world, "b").await;
            let mut b = ChildConsumer::spawn(&config, "b", &log.path, None);
            // B has joined, the group rebalanced, and B applies events of its share.
            b.wait_applying(&log, "instance b to apply events after a rebalance", || async {
                applied_by(&world, "b").await > before
            })
            .await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await; // a random kill time
            b.kill().await;
            relay.assert_running();
        }
        killing.store(false, Ordering::Relaxed);
    };
    let (ids, ()) = tokio::join!(writer, killer);
    let total = ids.len() as i64;
    wait_until("instance a to apply every event", WAIT, || async {
        if let Some(s) = a.borrow_mut().exited() {
            panic!(
                "instance a exited on its own ({}):\n{}",
                describe(s),
                log.tail(40)
            );
        }
        (distinct(&world.db.client).await >= total).then_some(())
    })
    .await;
    assert!(a.into_inner().stop().await.success(), "{}", log.tail(40));
    relay.stop().await;

    let audit = audit(&world.db.client, &ids).await;
    assert!(
        audit.duplicates.is_empty(),
        "duplicate effects: {:?}",
        audit.duplicates
    );
    assert!(
        audit.missing.is_empty(),
        "{} events never applied",
        audit.missing.len()
    );
    assert!(audit.unexpected.is_empty(), "{:?}", audit.unexpected);
    assert!(
        audit.out_of_order.is_empty(),
        "per-aggregate order broken: {:?}",
        audit.out_of_order
    );
    let (by_a, by_b) = (
        audit.per_instance.get("a").copied(),
        audit.per_instance.get("b").copied(),
    );
    assert!(
        by_a > Some(0) && by_b > Some(0),
        "the partitions were not shared: {:?}",
        audit.per_instance
    );
    eprintln!(
        "{total} events, {KILLS} SIGKILLs of instance b, a applied {by_a:?}, b applied {by_b:?}, \
         {} redeliveries absorbed, in {:?}",
        log.count("duplicate skipped"),
        started.elapsed()
    );
}
