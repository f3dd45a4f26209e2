//! The metrics of docs/consumers.md are recorded: a Prometheus recorder installed for this test binary sees
//! the applied events, the dead letter by reason, the handler latency, the assignment and, after a replay,
//! the duplicates skipped.

mod support;

use outboxd_consumer::metrics as m;
use outboxd_consumer::{ConsumerConfig, ConsumerStats};
use outboxd_testkit::kafka::client_config;
use outboxd_testkit::wait_until;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use support::projection::Projection;
use support::{World, WAIT};

async fn consume(config: &ConsumerConfig, until: impl Fn(u64, u64, u64) -> bool) {
    let stats = Arc::new(ConsumerStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = Projection {
        direct: None,
        instance: "metrics".into(),
    };
    let task = tokio::spawn(outboxd_consumer::run_with_stats(
        config.clone(),
        handler,
        async move {
            let _ = stopped.await;
        },
        Arc::clone(&stats),
    ));
    wait_until("the consumer to finish the topic", WAIT, || async {
        let s = stats.snapshot();
        until(s.applied, s.dead_lettered, s.duplicates).then_some(())
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
}

/// The value of the sample `name{labels}` in the Prometheus text, if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let matches = (key == name || key.starts_with(&format!("{name}{{")))
            && labels.iter().all(|(k, v)| key.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_documented_metrics_are_recorded() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");

    let world = World::new(1).await;
    let relay = world.spawn_relay();
    world.insert_orders("m", 0..3, 3, 1).await;
    world.until_relayed(3).await;
    relay.stop().await;
    let producer: FutureProducer = client_config(&world.services.kafka_bootstrap).create().unwrap();
    producer
        .send(
            FutureRecord::to(&world.topic)
                .key("a0")
                .payload("not avro")
                .headers(OwnedHeaders::new().insert(Header {
                    key: "id",
                    value: Some("m-poison"),
                })),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let config = world.consumer_config();
    consume(&config, |applied, dead, _| applied + dead >= 4).await;

    let text = handle.render();
    let topic = world.topic.as_str();
    assert_eq!(
        sample(&text, m::EVENTS, &[("outcome", "applied"), ("topic", topic)]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, m::EVENTS, &[("outcome", "dead_lettered")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, m::DEAD_LETTERS, &[("reason", "not_avro")]),
        Some(1.0),
        "{text}"
    );
    let count = format!("{}_count", m::HANDLER_SECONDS);
    assert_eq!(
        sample(&text, &count, &[]),
        Some(3.0),
        "one latency sample per attempt:\n{text}"
    );
    assert!(text.contains(m::ASSIGNED_PARTITIONS), "{text}");

    // A replay of the same records: all four are skipped by the inbox, and counted.
    let (bootstrap, t, g) = (
        world.services.kafka_bootstrap.clone(),
        world.topic.clone(),
        world.group.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&bootstrap).set("group.id", &g).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&t, 0, Offset::Offset(0)).unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
    consume(&config, |_, _, duplicates| duplicates >= 4).await;
    let text = handle.render();
    assert_eq!(
        sample(&text, m::DUPLICATES, &[("store", "postgres_inbox")]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, m::EVENTS, &[("outcome", "duplicate")]),
        Some(4.0),
        "{text}"
    );
}
