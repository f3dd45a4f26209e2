//! The fetch loop: one `read_committed` group consumer, one worker task per assigned partition fed through a
//! bounded channel (a full channel stops the fetching: memory stays bounded by `partition_buffer` and
//! librdkafka's queue), the rebalance callbacks that stop the workers of revoked partitions, and shutdown.

use crate::config::ConsumerConfig;
use crate::decode::Decoder;
use crate::dlq::DeadLetters;
use crate::error::ConsumerError;
use crate::event::Fetched;
use crate::handler::Handler;
use crate::metrics as m;
use crate::partition::{run_partition, PartitionShared};
use crate::stats::ConsumerStats;
use crate::store::Store;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::statistics::Statistics;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

type PartitionKey = (String, i32);

/// A running partition worker: its queue and its stop switch.
struct Worker {
    tx: mpsc::Sender<Fetched>,
    stop: watch::Sender<bool>,
}

/// The consumer's librdkafka context: stops revoked partitions' workers, reports lag.
pub(crate) struct GroupContext {
    workers: Mutex<HashMap<PartitionKey, Worker>>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (p, s) in &t.partitions {
                if *p >= 0 && s.consumer_lag >= 0 {
                    metrics::gauge!(m::LAG, "topic" => topic.clone(), "partition" => p.to_string())
                        .set(s.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let revoked = match rebalance {
            Rebalance::Revoke(tpl) => tpl.elements(),
            _ => return,
        };
        let mut workers = self.workers.lock().expect("workers lock");
        for e in &revoked {
            if let Some(w) = workers.remove(&(e.topic().to_string(), e.partition())) {
                // Finished between attempts; whatever it has not finished is the new owner's.
                let _ = w.stop.send(true);
            }
        }
        tracing::info!(revoked = revoked.len(), "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(assigned = tpl.count(), "partitions assigned");
        }
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        metrics::gauge!(m::ASSIGNED_PARTITIONS).set(assigned as f64);
    }
}

fn consumer(
    config: &ConsumerConfig,
    ctx: GroupContext,
) -> Result<StreamConsumer<GroupContext>, ConsumerError> {
    let mut c = ClientConfig::new();
    for (k, v) in &config.librdkafka {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", config.commit_interval_ms.to_string())
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set("statistics.interval.ms", config.lag_interval_ms.to_string());
    if !config.librdkafka.contains_key("auto.offset.reset") {
        c.set("auto.offset.reset", "earliest");
    }
    if let Some(id) = &config.instance_id {
        c.set("group.instance.id", id);
    }
    let setup = |what: &str| {
        let what = what.to_string();
        move |source| ConsumerError::KafkaSetup { what, source }
    };
    let consumer: StreamConsumer<GroupContext> = c.create_with_context(ctx).map_err(setup("consumer"))?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(setup(&format!("subscribe to {topics:?}")))?;
    Ok(consumer)
}

/// [`crate::run`], with counters the caller can read while it runs.
pub async fn run_with_stats<H: Handler>(
    config: ConsumerConfig,
    handler: H,
    shutdown: impl Future<Output = ()> + Send,
    stats: Arc<ConsumerStats>,
) -> Result<(), ConsumerError> {
    config.validate().map_err(ConsumerError::Config)?;
    let decoder =
        Decoder::new(&config.registry_url, config.registry_timeout_ms).map_err(ConsumerError::Registry)?;
    let store = Store::open(&config.store, &config.group_id).await?;
    let dlq = DeadLetters::new(
        &config.bootstrap_servers,
        &config.dlq_topic,
        &config.group_id,
        &config.librdkafka,
    )
    .map_err(|source| ConsumerError::KafkaSetup {
        what: "dead-letter producer".into(),
        source,
    })?;
    if config.create_dlq_topic {
        DeadLetters::ensure_topic(
            &config.bootstrap_servers,
            &config.dlq_topic,
            config.dlq_partitions,
            &config.librdkafka,
        )
        .await
        .map_err(ConsumerError::DeadLetterTopic)?;
    }
    let ctx = GroupContext {
        workers: Mutex::new(HashMap::new()),
    };
    let consumer = Arc::new(consumer(&config, ctx)?);
    tracing::info!(group = %config.group_id, topics = ?config.topics, store = store.kind(), "consumer started");
    let shared = Arc::new(PartitionShared {
        handler,
        decoder,
        store,
        dlq,
        consumer: Arc::clone(&consumer),
        in_flight: Semaphore::new(config.max_in_flight),
        retry: config.retry.clone(),
        stats,
    });
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let message = tokio::select! {
            biased;
            () = &mut shutdown => break,
            m = consumer.recv() => m,
        };
        let record = match message {
            Ok(m) => Fetched::from_message(&m),
            Err(e) => {
                // Broker away, a rebalance in progress: librdkafka retries by itself.
                tracing::warn!(error = %e, "Kafka consumer error");
                continue;
            }
        };
        let tx = worker_queue(&shared, &mut tasks, &record, config.partition_buffer);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // An error: the worker was stopped (revoked) meanwhile; the event is the new owner's.
            _ = tx.send(record) => {}
        }
        while tasks.try_join_next().is_some() {}
    }
    tracing::info!("shutting down: finishing the events in hand");
    for w in consumer.context().workers.lock().expect("workers lock").drain() {
        let _ = w.1.stop.send(true);
    }
    while tasks.join_next().await.is_some() {}
    drop(shared);
    // Closing commits the stored offsets (every one of them durable) and leaves the group.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    tracing::info!("consumer stopped");
    Ok(())
}

/// The queue of the record's partition, starting its worker when there is none.
fn worker_queue<H: Handler>(
    shared: &Arc<PartitionShared<H, GroupContext>>,
    tasks: &mut JoinSet<()>,
    record: &Fetched,
    capacity: usize,
) -> mpsc::Sender<Fetched> {
    let mut workers = shared.consumer.context().workers.lock().expect("workers lock");
    let key = (record.topic.clone(), record.partition);
    if let Some(w) = workers.get(&key).filter(|w| !w.tx.is_closed()) {
        return w.tx.clone();
    }
    let (tx, rx) = mpsc::channel(capacity);
    let (stop, stop_rx) = watch::channel(false);
    tasks.spawn(run_partition(Arc::clone(shared), rx, stop_rx));
    workers.insert(key, Worker { tx: tx.clone(), stop });
    tx
}
