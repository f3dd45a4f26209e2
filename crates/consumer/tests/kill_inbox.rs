//! The consumer SIGKILLed at random, again and again, while outboxd relays 20,000 events: with the Postgres
//! inbox every event's effect is in the projection exactly once, per aggregate in order, and the inbox
//! absorbed redeliveries (the events handled after the last offset commit before each kill).

mod support;

use outboxd_testkit::wait_until;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::child::{describe, ChildConsumer, ChildLog};
use support::projection::{audit, count, distinct};
use support::{World, WAIT};

const EVENTS: usize = 20_000;
const KILLS: usize = 20;
const AGGREGATES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the consumer process of the kill tests, started by them"]
async fn consumer_child() {
    support::child::child_main().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_consumer_applies_every_event_exactly_once_with_the_inbox() {
    let started = Instant::now();
    let world = World::new(4).await;
    let relay = world.spawn_relay();
    let mut config = world.consumer_config();
    // Static membership: a restarted instance takes its partitions back at once, without waiting for the
    // killed one's session to expire.
    config.instance_id = Some("kill-test-0".into());
    let log = ChildLog::new("kill_inbox");

    // The outbox is written while the consumer is killed, kept at most 3,000 events ahead of it.
    let killing = AtomicBool::new(true);
    let writer = world.feed("o", EVENTS, AGGREGATES, 3_000, &killing);
    let killer = async {
        let mut rng = rand::rngs::StdRng::from_entropy();
        for _ in 0..KILLS {
            let before = count(&world.db.client).await;
            let mut child = ChildConsumer::spawn(&config, "kill-test-0", &log.path, None);
            // Kill only a consumer that is applying events: the kill must land mid-stream.
            child
                .wait_applying(&log, "the consumer to apply events", || async {
                    count(&world.db.client).await > before
                })
                .await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await; // a random kill time
            let status = child.kill().await;
            assert_eq!(describe(status), "signal 9", "{}", log.tail(40));
            relay.assert_running();
        }
        killing.store(false, Ordering::Relaxed);
        KILLS
    };
    let (ids, kills) = tokio::join!(writer, killer);
    // Whatever the kills left is finished by one last instance.
    let mut child = ChildConsumer::spawn(&config, "kill-test-0", &log.path, None);
    let total = ids.len() as i64;
    wait_until("every event applied", WAIT, || async {
        (distinct(&world.db.client).await >= total).then_some(())
    })
    .await;
    let status = child.stop().await;
    assert!(
        status.success(),
        "graceful stop: {}\n{}",
        describe(status),
        log.tail(40)
    );
    relay.stop().await;

    let a = audit(&world.db.client, &ids).await;
    assert!(
        a.duplicates.is_empty(),
        "duplicate effects: {:?}",
        a.duplicates.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        a.missing.is_empty(),
        "{} events never applied, e.g. {:?}",
        a.missing.len(),
        &a.missing[..a.missing.len().min(5)]
    );
    assert!(a.unexpected.is_empty(), "unexpected effects: {:?}", a.unexpected);
    assert!(
        a.out_of_order.is_empty(),
        "per-aggregate order broken: {:?}",
        a.out_of_order
    );
    let inbox: i64 = world
        .db
        .client
        .query_one(
            "SELECT count(*) FROM public.inbox WHERE consumer_group = $1",
            &[&world.group],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(inbox, total, "one inbox row per event");
    let absorbed = log.count("duplicate skipped");
    assert!(
        kills >= KILLS,
        "only {kills} kills: the consumer finished too early to be killed {KILLS} times"
    );
    assert!(
        absorbed > 0,
        "no redelivery was absorbed: the kills missed the window between effect and commit"
    );
    eprintln!(
        "{total} events, {kills} SIGKILLs, {absorbed} redeliveries absorbed by the inbox, no duplicate effect, \
         in {:?}",
        started.elapsed()
    );
}
