//! Poison events on one partition, between good events of the same aggregate: a value that is not Avro, a
//! frame naming a schema id the registry does not have, a record without an event id, an event of a schema
//! that does not fit the handler's type, and one whose handler always fails. Each lands in the consumer's
//! dead-letter topic with its reason; every event after them is applied; the committed offset passes the
//! last record: nothing blocked, nothing lost.

mod support;

use outboxd_consumer::dlq::{DLQ_ATTEMPTS, DLQ_REASON, DLQ_SOURCE_OFFSET, DLQ_SOURCE_TOPIC};
use outboxd_consumer::ConsumerStats;
use outboxd_testkit::kafka::client_config;
use outboxd_testkit::wait_until;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::projection::{audit, Projection};
use support::{insert_row, World, WAIT};

/// Produces one record straight to the topic (not through outboxd): the poison outboxd would never write.
async fn produce(bootstrap: &str, topic: &str, id: Option<&str>, value: &[u8]) {
    let producer: FutureProducer = client_config(bootstrap).create().unwrap();
    let mut headers = OwnedHeaders::new();
    if let Some(id) = id {
        headers = headers.insert(Header {
            key: "id",
            value: Some(id),
        });
    }
    producer
        .send(
            FutureRecord::to(topic).key("a0").payload(value).headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_events_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let world = World::new(1).await;
    let relay = world.spawn_relay();
    let mut ids = world.insert_orders("before", 0..5, 5, 1).await;
    {
        // Through outboxd: an event the handler always fails, and one of a schema that does not fit.
        let mut client = world.db.connect().await;
        let tx = client.transaction().await.unwrap();
        insert_row(
            &tx,
            "p-handler",
            "a0",
            "OrderCreated",
            r#"{"orderId":"a0","amount":-1}"#,
        )
        .await;
        insert_row(&tx, "p-mismatch", "a0", "CustomerCreated", r#"{"name":"Ada"}"#).await;
        tx.commit().await.unwrap();
    }
    world.until_relayed(7).await;
    let bootstrap = world.services.kafka_bootstrap.clone();
    produce(
        &bootstrap,
        &world.topic,
        Some("p-not-avro"),
        b"{\"orderId\":\"a0\"}",
    )
    .await;
    produce(
        &bootstrap,
        &world.topic,
        Some("p-unknown"),
        &[0, 0x7f, 0xff, 0xff, 0xf0, 2, 4],
    )
    .await;
    produce(&bootstrap, &world.topic, None, b"no id at all").await;
    ids.extend(world.insert_orders("after", 5..10, 1, 1).await);
    let records = world.until_relayed(15).await;

    let config = world.consumer_config();
    let stats = Arc::new(ConsumerStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handler = Projection {
        direct: None,
        instance: "poison".into(),
    };
    let consumer = tokio::spawn(outboxd_consumer::run_with_stats(
        config.clone(),
        handler,
        async move {
            let _ = stopped.await;
        },
        Arc::clone(&stats),
    ));
    wait_until("every event applied or dead-lettered", WAIT, || async {
        let s = stats.snapshot();
        (s.applied + s.dead_lettered >= 15).then_some(())
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, consumer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    relay.stop().await;

    let s = stats.snapshot();
    assert_eq!((s.applied, s.dead_lettered, s.duplicates), (10, 5, 0), "{s:?}");
    assert_eq!(
        s.retries,
        u64::from(config.retry.max_attempts - 1),
        "the failing handler was retried"
    );
    let a = audit(&world.db.client, &ids).await;
    assert!(
        a.missing.is_empty() && a.duplicates.is_empty() && a.unexpected.is_empty(),
        "{a:?}"
    );
    assert!(a.out_of_order.is_empty(), "{a:?}");

    let offset_of = |id: Option<&str>| {
        records
            .iter()
            .find(|r| r.header("id").as_deref() == id)
            .map(|r| r.offset.to_string())
            .unwrap()
    };
    let dead = world.drain(&world.dlq).await;
    let got: BTreeMap<String, (String, String, String)> = dead
        .iter()
        .map(|r| {
            let h = |n: &str| r.header(n).unwrap_or_default();
            (h(DLQ_REASON), (h("id"), h(DLQ_SOURCE_OFFSET), h(DLQ_ATTEMPTS)))
        })
        .collect();
    let want: BTreeMap<String, (String, String, String)> = [
        ("handler_failed", "p-handler", Some("p-handler"), "3"),
        ("schema_mismatch", "p-mismatch", Some("p-mismatch"), "0"),
        ("not_avro", "p-not-avro", Some("p-not-avro"), "0"),
        ("unknown_schema", "p-unknown", Some("p-unknown"), "0"),
        ("missing_event_id", "", None, "0"),
    ]
    .into_iter()
    .map(|(reason, id, lookup, attempts)| {
        (
            reason.to_string(),
            (id.to_string(), offset_of(lookup), attempts.to_string()),
        )
    })
    .collect();
    assert_eq!(dead.len(), 5, "one dead letter per poison event");
    assert_eq!(got, want);
    assert!(dead
        .iter()
        .all(|r| r.header(DLQ_SOURCE_TOPIC).as_deref() == Some(world.topic.as_str())));
    let original = records
        .iter()
        .find(|r| r.header("id").as_deref() == Some("p-not-avro"))
        .unwrap();
    let letter = dead
        .iter()
        .find(|r| r.header("id").as_deref() == Some("p-not-avro"))
        .unwrap();
    assert_eq!(
        (&letter.key, &letter.value),
        (&original.key, &original.value),
        "the original record is kept"
    );

    // The group's committed offset is the end of the partition: no event is left behind or blocked.
    let (bootstrap, topic, group) = (bootstrap.clone(), world.topic.clone(), world.group.clone());
    let committed = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&bootstrap)
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        c.committed_offsets(tpl, Duration::from_secs(10))
            .unwrap()
            .find_partition(&topic, 0)
            .unwrap()
            .offset()
    })
    .await
    .unwrap();
    let last = records.iter().map(|r| r.offset).max().unwrap();
    assert_eq!(
        committed,
        Offset::Offset(last + 1),
        "committed up to the last record"
    );

    // The inbox recorded the dead letters too: a redelivery would skip them.
    let recorded: i64 = world
        .db
        .client
        .query_one(
            "SELECT count(*) FROM public.inbox WHERE outcome = 'dead_lettered'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 4, "every dead letter with an event id is in the inbox");
}
