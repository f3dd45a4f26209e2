//! Partitions are handled in parallel, never more than `max_in_flight` events at once, and each partition one
//! event at a time: a slow handler on 4 partitions with `max_in_flight = 2` runs exactly 2 at once at its peak,
//! and never two events of one aggregate together.

mod support;

use outboxd_consumer::{ConsumerStats, Effects, Event, Handler, HandlerError};
use outboxd_testkit::wait_until;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::projection::TestOrder;
use support::{World, WAIT};

#[derive(Debug, Default)]
struct Slow {
    now: AtomicUsize,
    peak: AtomicUsize,
    busy_aggregates: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
}

/// The handler, sharing its counters with the test.
#[derive(Debug)]
struct SlowHandler(Arc<Slow>);

impl Handler for SlowHandler {
    type Payload = TestOrder;

    async fn handle(&self, event: &Event<TestOrder>, _effects: Effects<'_>) -> Result<(), HandlerError> {
        let me = &self.0;
        let agg = event.payload.order_id.clone();
        if !me.busy_aggregates.lock().unwrap().insert(agg.clone()) {
            me.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        let n = me.now.fetch_add(1, Ordering::SeqCst) + 1;
        me.peak.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await; // the slow handler under test
        me.now.fetch_sub(1, Ordering::SeqCst);
        me.busy_aggregates.lock().unwrap().remove(&agg);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_run_in_parallel_within_max_in_flight() {
    const EVENTS: usize = 200;
    let world = World::new(4).await;
    let relay = world.spawn_relay();
    world.insert_orders("p", 0..EVENTS, 50, 40).await;
    let records = world.until_relayed(EVENTS).await;
    relay.stop().await;
    let partitions: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(
        partitions.len() >= 3,
        "the events are spread over partitions: {partitions:?}"
    );

    let mut config = world.consumer_config();
    config.max_in_flight = 2;
    config.partition_buffer = 4;
    let slow = Arc::new(Slow::default());
    let stats = Arc::new(ConsumerStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(outboxd_consumer::run_with_stats(
        config,
        SlowHandler(Arc::clone(&slow)),
        async move {
            let _ = stopped.await;
        },
        Arc::clone(&stats),
    ));
    wait_until("every event handled", WAIT, || async {
        (stats.snapshot().applied >= EVENTS as u64).then_some(())
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    assert_eq!(
        slow.peak.load(Ordering::SeqCst),
        2,
        "2 events in flight at the peak, never more"
    );
    assert_eq!(
        slow.overlaps.load(Ordering::Relaxed),
        0,
        "two events of one aggregate ran at once"
    );
}
