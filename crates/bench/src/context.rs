//! What every scenario shares: the services, the relay binary, where files go; and the relay drain that the
//! throughput and latency scenarios both use (topic, consumer, outboxd, wait, peak RSS, stop).

use crate::consumer::{self, Consumed, ConsumerHandle, ConsumerSpec};
use crate::env::Services;
use crate::kafka;
use crate::profile::Perf;
use crate::relay::{Relay, RelayCommand, RelaySpec, RunTopics};
use anyhow::{bail, Context, Result};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shared settings of a bench invocation.
#[derive(Debug)]
pub struct Bench {
    /// The local services.
    pub services: Services,
    /// How outboxd is started; `None` measures the ceiling only.
    pub relay: Option<RelayCommand>,
    /// Directory of the `.avsc` files given to outboxd.
    pub schema_dir: PathBuf,
    /// Per-run configs and logs go under it.
    pub work_dir: PathBuf,
    /// Parallel sessions for pre-writing and for the steady-rate writers.
    pub sessions: u64,
    /// Partitions of the event topic.
    pub partitions: i32,
    /// Extra relay settings (`--relay-set`).
    pub overrides: Vec<String>,
}

/// One run's database and names, as the relay needs them.
#[derive(Debug)]
pub struct RunTarget<'a> {
    /// Run name (database, ids, topic prefix).
    pub name: &'a str,
    /// URL of the run's database.
    pub db_url: &'a str,
    /// The relay's slot.
    pub slot: &'a str,
    /// The publication.
    pub publication: &'a str,
    /// The run's topics.
    pub topics: &'a RunTopics,
}

/// The relay's side of a run.
#[derive(Debug)]
pub struct Drained {
    /// What the consumer saw.
    pub consumed: Consumed,
    /// When outboxd was spawned.
    pub started: Instant,
    /// Its pid.
    pub pid: u32,
    /// outboxd's peak RSS in bytes.
    pub peak_rss: u64,
}

/// A bounded time for a run of `rows` rows (at least 60 s, plus 1 s per 5,000 rows).
pub fn run_timeout(rows: u64) -> Duration {
    Duration::from_secs(60 + rows / 5_000)
}

impl Bench {
    /// The relay command, or an error in a ceiling-only run.
    pub fn relay(&self) -> Result<&RelayCommand> {
        self.relay.as_ref().context("no relay in a ceiling-only run")
    }

    /// Creates the event topic, starts the consumer and outboxd, runs `drive` (which makes the consumer
    /// reach its target, e.g. by writing), then stops outboxd after reading its peak RSS. With `perf_dir`, a
    /// system-wide `perf record` runs while outboxd does.
    pub async fn drain<F, Fut>(
        &self,
        target: &RunTarget<'_>,
        consumer_spec: ConsumerSpec,
        expected: Option<u64>,
        perf_dir: Option<&Path>,
        drive: F,
    ) -> Result<Drained>
    where
        F: FnOnce(ConsumerHandle, Relay) -> Fut,
        Fut: Future<Output = (ConsumerHandle, Relay, Result<()>)>,
    {
        kafka::create_topic(
            &self.services.kafka_bootstrap,
            &target.topics.events,
            self.partitions,
        )
        .await?;
        let consumer = consumer::start(consumer_spec, expected)?;
        let work_dir = self.work_dir.join(target.name);
        let spec = RelaySpec {
            command: self.relay()?,
            work_dir: &work_dir,
            services: &self.services,
            name: target.name,
            db_url: target.db_url,
            slot: target.slot,
            publication: target.publication,
            topics: target.topics,
            schema_dir: &self.schema_dir,
            overrides: &self.overrides,
        };
        let relay = match Relay::start(&spec) {
            Ok(r) => r,
            Err(e) => {
                consumer.stop()?;
                return Err(e);
            }
        };
        let perf = match perf_dir {
            Some(dir) => Some(Perf::start(dir, relay.pid()).await?),
            None => None,
        };
        let (started, pid) = (relay.started, relay.pid());
        let (consumer, relay, driven) = drive(consumer, relay).await;
        let peak_rss = relay.peak_rss();
        if let Some(p) = perf {
            p.stop().await?;
        }
        let log = relay.log.clone();
        relay.stop(Duration::from_secs(20)).await?;
        if let Err(e) = driven {
            consumer.stop()?;
            return Err(e.context(format!("outboxd log: {}", log.display())));
        }
        let consumed = consumer.join()?;
        Ok(Drained {
            consumed,
            started,
            pid,
            peak_rss: peak_rss?,
        })
    }
}

/// Waits until the consumer has seen `target` distinct events, failing early when outboxd exits.
pub async fn wait_consumed(
    consumer: &ConsumerHandle,
    relay: &mut Relay,
    target: u64,
    deadline: Instant,
) -> Result<()> {
    loop {
        if consumer.distinct() >= target {
            return Ok(());
        }
        relay.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "only {} of {target} events became visible before the deadline",
                consumer.distinct()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
