//! Debezium as the benchmark's peer (issue 12): Debezium's Postgres connector with its
//! Outbox Event Router in Kafka Connect, on a slot of its own created at the same point as outboxd's and the
//! ceiling's (so it reads the same WAL), measured like outboxd: from the JVM's spawn until the N-th distinct
//! event is visible to the same `read_committed` consumer, start-up (first event) apart, duplicates and
//! missing events, peak RSS and CPU seconds of the Connect JVM and of its walsender. Each variant runs alone,
//! after outboxd, and is stopped by pid afterwards; its slot and topics are dropped.
//!
//! Modes: at-least-once is Debezium's default deployment (`ConnectStandalone`, offsets in a file); exactly-once
//! needs distributed mode (KIP-618): `ConnectDistributed` with one worker, `exactly.once.source.support =
//! enabled`, connector `exactly.once.support = required`, `transaction.boundary = poll`. Installed by
//! `tools/debezium/install` (from Maven Central through `tools/debezium/pom.xml`).

use crate::consumer::{self, ConsumerHandle, ConsumerSpec};
use crate::env::Services;
use crate::kafka;
use crate::pg::{connect, BenchDb, INSERT_RANGE_SQL, PUBLICATION};
use crate::procstat;
use crate::relay::log_tail;
use crate::writer::{self, WriterSpec, WriterTally};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The Debezium release (every Debezium artifact).
pub const VERSION: &str = "3.6.1.Final";
/// The Kafka Connect release Debezium 3.6.1.Final is built against (`version.kafka` of its pom).
pub const CONNECT_VERSION: &str = "4.3.0";
/// The Connect JVM's options: a bounded heap, and the GC settings of Kafka's own start scripts.
const JVM_OPTS: &[&str] = &[
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
];
/// The throughput settings Debezium's docs recommend, as applied by `--debezium-settings tuned` (connector
/// properties; `producer.override.*` goes to the connector's producer).
pub const TUNED: &[(&str, &str)] = &[
    ("max.batch.size", "8192"),
    ("max.queue.size", "32768"),
    ("producer.override.batch.size", "524288"),
    ("producer.override.linger.ms", "20"),
];
/// The worker setting that lets the connector override its producer's settings (tuned runs only).
const TUNED_WORKER: &[(&str, &str)] = &[("connector.client.config.override.policy", "All")];

/// Peers of outboxd in the throughput runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// Debezium's Postgres connector + Outbox Event Router in Kafka Connect.
    Debezium,
    /// No peer (outboxd and the ceiling only).
    None,
}

/// Debezium's delivery guarantee (and so its Connect deployment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Its default: Kafka Connect standalone (offsets in a file).
    AtLeastOnce,
    /// Kafka Connect distributed with one worker, exactly-once source support (KIP-618).
    ExactlyOnce,
}

/// Which Debezium settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Settings {
    /// Debezium's and Connect's defaults.
    Defaults,
    /// The throughput settings of Debezium's docs (`TUNED`).
    Tuned,
}

/// One configuration of the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Variant {
    /// Delivery guarantee.
    pub mode: Mode,
    /// Defaults or tuned.
    pub settings: Settings,
}

impl Variant {
    /// For the tables.
    pub fn label(&self) -> String {
        let mode = match self.mode {
            Mode::AtLeastOnce => "Debezium at-least-once",
            Mode::ExactlyOnce => "Debezium exactly-once",
        };
        match self.settings {
            Settings::Defaults => mode.to_string(),
            Settings::Tuned => format!("{mode}, tuned"),
        }
    }

    /// For slot, connector and directory names (`[a-z0-9_]`).
    pub fn tag(&self) -> &'static str {
        match (self.mode, self.settings) {
            (Mode::AtLeastOnce, Settings::Defaults) => "dbz_alo",
            (Mode::ExactlyOnce, Settings::Defaults) => "dbz_eos",
            (Mode::AtLeastOnce, Settings::Tuned) => "dbz_alo_tuned",
            (Mode::ExactlyOnce, Settings::Tuned) => "dbz_eos_tuned",
        }
    }

    fn main_class(&self) -> &'static str {
        match self.mode {
            Mode::AtLeastOnce => "org.apache.kafka.connect.cli.ConnectStandalone",
            Mode::ExactlyOnce => "org.apache.kafka.connect.cli.ConnectDistributed",
        }
    }
}

/// The installed peer and the variants to run.
#[derive(Clone, Debug)]
pub struct Peers {
    /// `<tools>/debezium-3.6.1.Final` with `connect/` and `plugins/debezium-postgres/`.
    pub home: PathBuf,
    /// log4j2 configuration of the worker.
    pub log4j_config: PathBuf,
    /// What runs, in this order, after outboxd in every throughput run.
    pub variants: Vec<Variant>,
    /// Connector settings over the generated ones (`--debezium-set KEY=VALUE`), every variant.
    pub overrides: Vec<(String, String)>,
}

/// The default install directory: `$OUTBOXD_TOOLS` or `~/.cache/outboxd/tools`, then `debezium-<version>`.
pub fn default_home() -> PathBuf {
    let tools = std::env::var_os("OUTBOXD_TOOLS").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/outboxd/tools")
        },
        PathBuf::from,
    );
    tools.join(format!("debezium-{VERSION}"))
}

impl Peers {
    /// Checks the install and lists the variants (every settings × mode, settings first).
    pub fn new(
        home: PathBuf,
        repo: &Path,
        modes: &[Mode],
        settings: &[Settings],
        overrides: &[String],
    ) -> Result<Peers> {
        if !home.join(".complete").exists() {
            bail!(
                "Debezium is not installed in {}: run tools/debezium/install (scripts/bench does with --peers debezium)",
                home.display()
            );
        }
        let mut variants = Vec::new();
        for &s in settings {
            for &m in modes {
                let v = Variant { mode: m, settings: s };
                if !variants.contains(&v) {
                    variants.push(v);
                }
            }
        }
        let overrides = overrides
            .iter()
            .map(|o| {
                o.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                    .with_context(|| format!("--debezium-set {o:?}: expected KEY=VALUE"))
            })
            .collect::<Result<_>>()?;
        Ok(Peers {
            home,
            log4j_config: repo.join("tools/debezium/log4j2.properties"),
            variants,
            overrides,
        })
    }

    /// The report's description: versions, how Connect runs, the connector's settings, what tuning changes.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "Debezium: io.debezium:debezium-connector-postgres:{VERSION} with its Outbox Event Router in Kafka \
             Connect {CONNECT_VERSION} (`java {} -cp <connect jars> <ConnectStandalone | ConnectDistributed> \
             worker.properties`, connector submitted by REST). Connector settings (every variant): `{}`. \
             Exactly-once adds `exactly.once.source.support=enabled` (worker), `exactly.once.support=required`, \
             `transaction.boundary=poll` (connector). Values are JSON without schemas, keys strings; outboxd \
             validates and writes Avro: not like for like.",
            JVM_OPTS.join(" "),
            common_connector_settings()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("`, `")
        );
        if !self.overrides.is_empty() {
            out.push_str(&format!(
                " Changed with --debezium-set (every variant): `{}`.",
                self.overrides
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("`, `")
            ));
        }
        if self.variants.iter().any(|v| v.settings == Settings::Tuned) {
            out.push_str(&format!(
                " Tuned runs change: `{}`.",
                TUNED_WORKER
                    .iter()
                    .map(|(k, v)| format!("{k}={v} (worker)"))
                    .chain(TUNED.iter().map(|(k, v)| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join("`, `")
            ));
        }
        out
    }

    /// The slot of each variant in a run's database.
    pub fn slot_names(&self, db_name: &str) -> Vec<String> {
        self.variants
            .iter()
            .map(|v| format!("{db_name}_{}", v.tag()))
            .collect()
    }
}

/// The connector settings every variant has (but the connection's and the run's names).
fn common_connector_settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("plugin.name", "pgoutput"),
        ("publication.autocreate.mode", "disabled"),
        ("snapshot.mode", "no_data"),
        ("table.include.list", "public.outbox"),
        ("tombstones.on.delete", "false"),
        (
            "key.converter",
            "org.apache.kafka.connect.storage.StringConverter",
        ),
        ("value.converter", "org.apache.kafka.connect.json.JsonConverter"),
        ("value.converter.schemas.enable", "false"),
        ("transforms", "outbox"),
        (
            "transforms.outbox.type",
            "io.debezium.transforms.outbox.EventRouter",
        ),
        ("transforms.outbox.route.by.field", "aggregate_type"),
        ("transforms.outbox.table.field.event.id", "id"),
        ("transforms.outbox.table.field.event.key", "aggregate_id"),
        ("transforms.outbox.table.field.event.type", "event_type"),
        ("transforms.outbox.table.field.event.payload", "payload"),
        ("transforms.outbox.table.expand.json.payload", "true"),
        (
            "transforms.outbox.table.fields.additional.placement",
            "event_type:header:eventType",
        ),
        ("transforms.outbox.table.op.invalid.behavior", "warn"),
        ("transforms.outbox.route.tombstone.on.empty.payload", "false"),
    ]
}

/// What one variant achieved in one run (the figures are `None` when it failed before them).
#[derive(Clone, Debug, Serialize)]
pub struct PeerResult {
    /// Which configuration.
    pub variant: Variant,
    /// For the tables.
    pub label: String,
    /// Spawn of the JVM until the N-th distinct event was visible.
    pub secs: Option<f64>,
    /// Spawn until the first event was visible (start-up).
    pub first_event_secs: Option<f64>,
    /// Distinct events seen.
    pub distinct: u64,
    /// Events seen more than once.
    pub duplicates: u64,
    /// Events never seen (rows − distinct).
    pub missing: u64,
    /// Peak RSS of the Connect JVM (VmHWM) in bytes.
    pub peak_rss: Option<u64>,
    /// CPU seconds (utime + stime) of the Connect JVM, start-up included.
    pub cpu_secs: Option<f64>,
    /// CPU seconds of the walsender serving its slot.
    pub walsender_cpu_secs: Option<f64>,
    /// Bytes of the record values (JSON).
    pub value_bytes: u64,
    /// Why it did not finish, if it did not.
    pub error: Option<String>,
    /// Latency runs: what the writers wrote while the connector ran.
    #[serde(skip)]
    pub written: Option<WriterTally>,
    /// Latency runs: when each event became visible (index, µs since the epoch).
    #[serde(skip)]
    pub visible_us: Vec<(u64, i64)>,
}

/// What a variant's run does once its connector is submitted.
#[derive(Clone, Debug)]
pub enum Workload {
    /// Drain this many rows written before the connector started.
    Drain {
        /// Rows pre-written (the consumer waits for as many distinct events).
        rows: u64,
    },
    /// Once a warm-up event (index 0) is visible, write at a steady rate and note when each event is seen.
    Latency(WriterSpec),
}

/// One variant's run.
#[derive(Debug)]
pub struct PeerRun<'a> {
    /// The services (broker).
    pub services: &'a Services,
    /// The installed peer.
    pub peers: &'a Peers,
    /// Which configuration.
    pub variant: Variant,
    /// The run's database.
    pub db: &'a BenchDb,
    /// The variant's slot, created with the others before the rows were written.
    pub slot: &'a str,
    /// Drain or latency.
    pub workload: Workload,
    /// Partitions of the event topic.
    pub partitions: i32,
    /// Directory of the run (worker config, connector config and log go into `<tag>/`).
    pub run_dir: &'a Path,
    /// Give up after this long.
    pub timeout: Duration,
}

impl PeerRun<'_> {
    /// Rows pre-written before the connector started (0 for a latency run).
    fn rows(&self) -> u64 {
        match self.workload {
            Workload::Drain { rows } => rows,
            Workload::Latency(_) => 0,
        }
    }

    /// The topic the Event Router routes `aggregate_type = 'order'` to (prefixed by the run's slot).
    fn event_topic(&self) -> String {
        format!("{}.outbox.event.order", self.slot)
    }

    /// Connect's internal topics in distributed mode.
    fn internal_topics(&self) -> [String; 3] {
        ["configs", "offsets", "status"].map(|t| format!("{}.connect-{t}", self.slot))
    }

    fn worker_properties(&self, rest_port: u16, dir: &Path) -> String {
        let mut p: Vec<(&str, String)> = vec![
            ("bootstrap.servers", self.services.kafka_bootstrap.clone()),
            (
                "key.converter",
                "org.apache.kafka.connect.storage.StringConverter".to_string(),
            ),
            (
                "value.converter",
                "org.apache.kafka.connect.json.JsonConverter".to_string(),
            ),
            ("value.converter.schemas.enable", "false".to_string()),
            (
                "plugin.path",
                self.peers.home.join("plugins").display().to_string(),
            ),
            ("listeners", format!("http://127.0.0.1:{rest_port}")),
            ("rest.advertised.host.name", "127.0.0.1".to_string()),
            ("rest.advertised.port", rest_port.to_string()),
        ];
        match self.variant.mode {
            Mode::AtLeastOnce => p.push((
                "offset.storage.file.filename",
                dir.join("offsets.dat").display().to_string(),
            )),
            Mode::ExactlyOnce => {
                let [configs, offsets, status] = self.internal_topics();
                p.push(("group.id", format!("{}-connect", self.slot)));
                p.push(("config.storage.topic", configs));
                p.push(("offset.storage.topic", offsets));
                p.push(("status.storage.topic", status));
                for k in [
                    "config.storage.replication.factor",
                    "offset.storage.replication.factor",
                    "status.storage.replication.factor",
                ] {
                    p.push((k, "1".to_string()));
                }
                p.push(("exactly.once.source.support", "enabled".to_string()));
            }
        }
        if self.variant.settings == Settings::Tuned {
            for &(k, v) in TUNED_WORKER {
                p.push((k, v.to_string()));
            }
        }
        let mut text = format!(
            "# Kafka Connect worker of the outboxd bench ({})\n",
            self.variant.label()
        );
        for (k, v) in p {
            text.push_str(&format!("{k}={v}\n"));
        }
        text
    }

    fn connector_config(&self) -> Result<Value> {
        let pg = PgParams::parse(&self.db.url)?;
        let mut c = Map::new();
        let mut set = |k: &str, v: String| {
            c.insert(k.to_string(), Value::String(v));
        };
        set(
            "connector.class",
            "io.debezium.connector.postgresql.PostgresConnector".into(),
        );
        set("tasks.max", "1".into());
        set("database.hostname", pg.host);
        set("database.port", pg.port.to_string());
        set("database.user", pg.user);
        if let Some(pw) = pg.password {
            set("database.password", pw);
        }
        set("database.dbname", pg.dbname);
        set("topic.prefix", self.slot.to_string());
        set("slot.name", self.slot.to_string());
        set("publication.name", PUBLICATION.to_string());
        for (k, v) in common_connector_settings() {
            set(k, v.to_string());
        }
        set(
            "transforms.outbox.route.topic.replacement",
            format!("{}.outbox.event.${{routedByValue}}", self.slot),
        );
        if self.variant.mode == Mode::ExactlyOnce {
            set("exactly.once.support", "required".into());
            set("transaction.boundary", "poll".into());
        }
        if self.variant.settings == Settings::Tuned {
            for &(k, v) in TUNED {
                set(k, v.to_string());
            }
        }
        for (k, v) in &self.peers.overrides {
            set(k.as_str(), v.clone());
        }
        Ok(Value::Object(c))
    }
}

/// The parts of a `postgres://user[:password]@host[:port]/db` URL that Debezium takes one by one.
#[derive(Debug, PartialEq, Eq)]
struct PgParams {
    user: String,
    password: Option<String>,
    host: String,
    port: u16,
    dbname: String,
}

impl PgParams {
    fn parse(url: &str) -> Result<PgParams> {
        let rest = url
            .split_once("://")
            .with_context(|| format!("{url:?} is not a postgres:// URL"))?
            .1;
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let (authority, dbname) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("postgres", authority));
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u.to_string(), Some(p.to_string())),
            None => (userinfo.to_string(), None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().context("port of the Postgres URL")?),
            None => (hostport.to_string(), 5432),
        };
        Ok(PgParams {
            user,
            password,
            host,
            port,
            dbname: dbname.to_string(),
        })
    }
}

/// Runs every variant, one after the other, on its slot; failures are recorded in the results.
pub async fn run_all(
    services: &Services,
    peers: &Peers,
    db: &BenchDb,
    slots: &[String],
    rows: u64,
    partitions: i32,
    run_dir: &Path,
) -> Vec<PeerResult> {
    let mut out = Vec::new();
    for (variant, slot) in peers.variants.iter().zip(slots) {
        let r = PeerRun {
            services,
            peers,
            variant: *variant,
            db,
            slot,
            workload: Workload::Drain { rows },
            partitions,
            run_dir,
            // Connect starts in seconds, and Debezium may be much slower than outboxd.
            timeout: Duration::from_secs(120 + rows / 2_000),
        }
        .run()
        .await;
        out.push(r);
    }
    out
}

impl PeerRun<'_> {
    /// Runs the variant once; never fails (an error is kept in the result), always stops its JVM.
    pub async fn run(&self) -> PeerResult {
        let mut result = PeerResult {
            variant: self.variant,
            label: self.variant.label(),
            secs: None,
            first_event_secs: None,
            distinct: 0,
            duplicates: 0,
            missing: self.rows(),
            peak_rss: None,
            cpu_secs: None,
            walsender_cpu_secs: None,
            value_bytes: 0,
            error: None,
            written: None,
            visible_us: Vec::new(),
        };
        if let Err(e) = self.run_in(&mut result).await {
            eprintln!("bench: {} failed: {e:#}", self.variant.label());
            result.error = Some(format!("{e:#}"));
        }
        let mut topics = vec![self.event_topic()];
        if self.variant.mode == Mode::ExactlyOnce {
            topics.extend(self.internal_topics());
        }
        if let Err(e) = kafka::delete_topics(&self.services.kafka_bootstrap, &topics).await {
            eprintln!("bench: deleting the topics of {}: {e:#}", self.slot);
        }
        if let Err(e) = drop_slot(&self.db.url, self.slot).await {
            eprintln!(
                "bench: dropping slot {} (dropped with the database later): {e:#}",
                self.slot
            );
        }
        result
    }

    async fn run_in(&self, result: &mut PeerResult) -> Result<()> {
        let dir = self.run_dir.join(self.variant.tag());
        std::fs::create_dir_all(&dir)?;
        let topic = self.event_topic();
        kafka::create_topic(&self.services.kafka_bootstrap, &topic, self.partitions).await?;
        let port = free_port()?;
        let worker = dir.join("worker.properties");
        std::fs::write(&worker, self.worker_properties(port, &dir))?;
        let connector = dir.join("connector.json");
        std::fs::write(
            &connector,
            serde_json::to_string_pretty(&self.connector_config()?)?,
        )?;
        let deadline = Instant::now() + self.timeout;
        let consumer = consumer::start(
            ConsumerSpec {
                bootstrap: self.services.kafka_bootstrap.clone(),
                topic,
                deadline,
                latency_from: matches!(self.workload, Workload::Latency(_)).then_some(1),
                record_visible: true,
            },
            match self.workload {
                Workload::Drain { rows } => Some(rows),
                Workload::Latency(_) => None,
            },
        )?;
        let log = dir.join("connect.log");
        let started = Instant::now();
        let mut child = match self.spawn(&worker, &log) {
            Ok(c) => c,
            Err(e) => {
                consumer.stop()?;
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        let driven = self
            .drive(&mut child, &consumer, port, &connector, &log, deadline)
            .await
            .map(|written| result.written = written);
        // Figures of the JVM and its walsender before they go away.
        result.peak_rss = procstat::peak_rss(pid);
        result.cpu_secs = procstat::cpu_secs(pid);
        if let Ok(Some(w)) = self.db.slot_pid(self.slot).await {
            result.walsender_cpu_secs = procstat::cpu_secs(w);
        }
        stop(&mut child, pid).await;
        let consumed = if driven.is_ok() {
            consumer.join()?
        } else {
            consumer.stop()?
        };
        result.distinct = consumed.distinct;
        result.duplicates = consumed.duplicates;
        let expected = self.rows() + result.written.map_or(0, |w| 1 + w.events);
        result.missing = expected.saturating_sub(consumed.distinct);
        result.value_bytes = consumed.value_bytes;
        result.visible_us = consumed.visible_us;
        result.first_event_secs = consumed.first_at.map(|t| (t - started).as_secs_f64());
        result.secs = consumed.done_at.map(|t| (t - started).as_secs_f64());
        driven.with_context(|| format!("Connect log: {}", log.display()))
    }

    fn spawn(&self, worker: &Path, log: &Path) -> Result<Child> {
        let out = std::fs::File::create(log)?;
        Command::new("java")
            .args(JVM_OPTS)
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.peers.log4j_config.display()
            ))
            .arg("-cp")
            .arg(format!("{}/connect/*", self.peers.home.display()))
            .arg(self.variant.main_class())
            .arg(worker)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting Kafka Connect (java: is Java 17+ installed?)")
    }

    /// Waits for the REST API, submits the connector, writes the latency load (if any), waits until every
    /// event is visible.
    async fn drive(
        &self,
        child: &mut Child,
        consumer: &ConsumerHandle,
        port: u16,
        connector: &Path,
        log: &Path,
        deadline: Instant,
    ) -> Result<Option<WriterTally>> {
        let base = format!("http://127.0.0.1:{port}");
        let name = self.slot;
        let alive = |child: &mut Child| -> Result<()> {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Kafka Connect exited ({status}); last log lines:\n{}",
                    log_tail(log, 20)
                );
            }
            Ok(())
        };
        // The REST API answers once the worker is up (plugins scanned); distributed mode may still refuse a
        // connector while the worker joins its group (409), so the PUT is retried.
        loop {
            alive(child)?;
            if Instant::now() > deadline {
                bail!("Kafka Connect's REST API did not accept the connector before the deadline");
            }
            if let Ok((code, body)) = http(
                "PUT",
                &format!("{base}/connectors/{name}/config"),
                Some(connector),
            )
            .await
            {
                match code {
                    200 | 201 => break,
                    0 | 404 | 409 | 500 | 503 => {}
                    _ => bail!("PUT /connectors/{name}/config: HTTP {code}: {body}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut written = None;
        let target = match &self.workload {
            Workload::Drain { rows } => *rows,
            Workload::Latency(writers) => {
                // Warm-up: Debezium is streaming once event 0 is visible.
                let client = connect(&self.db.url).await?;
                client.execute(INSERT_RANGE_SQL, &[&0i64, &0i64]).await?;
                self.wait_visible(child, consumer, 1, &base, log, deadline)
                    .await
                    .context("waiting for the warm-up event")?;
                let w = writer::run(writers).await?;
                consumer.expect(1 + w.events);
                written = Some(w);
                1 + w.events
            }
        };
        self.wait_visible(child, consumer, target, &base, log, deadline)
            .await?;
        Ok(written)
    }

    /// Waits until `target` distinct events are visible, watching the JVM and the connector's status.
    async fn wait_visible(
        &self,
        child: &mut Child,
        consumer: &ConsumerHandle,
        target: u64,
        base: &str,
        log: &Path,
        deadline: Instant,
    ) -> Result<()> {
        let name = self.slot;
        let mut next_status = Instant::now();
        loop {
            if consumer.distinct() >= target {
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "Kafka Connect exited ({status}); last log lines:\n{}",
                    log_tail(log, 20)
                );
            }
            if Instant::now() > deadline {
                let status = http("GET", &format!("{base}/connectors/{name}/status"), None)
                    .await
                    .map_or_else(|e| format!("{e:#}"), |(_, b)| b);
                bail!(
                    "only {} of {} events became visible before the deadline; connector status: {}",
                    consumer.distinct(),
                    target,
                    truncate(&status, 600)
                );
            }
            if Instant::now() >= next_status {
                next_status = Instant::now() + Duration::from_secs(2);
                if let Ok((200, body)) = http("GET", &format!("{base}/connectors/{name}/status"), None).await
                {
                    if body.contains("\"FAILED\"") {
                        bail!("the connector failed: {}", truncate(&body, 1500));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Stops the JVM by its pid: SIGTERM, then SIGKILL after 30 s.
async fn stop(child: &mut Child, pid: u32) {
    if matches!(child.try_wait(), Ok(Some(_))) || pid == 0 {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        eprintln!("bench: Kafka Connect (pid {pid}) did not stop within 30 s of SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

/// A free TCP port on 127.0.0.1 for Connect's REST API.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// One HTTP request with curl: (status, body); status 0 when nothing answered.
async fn http(method: &str, url: &str, json_body: Option<&Path>) -> Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(body) = json_body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", body.display()));
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// Drops the variant's slot once its walsender has gone (retried for 10 s).
async fn drop_slot(db_url: &str, slot: &str) -> Result<()> {
    let client = connect(db_url).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        let _ = client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await;
        if Instant::now() > deadline {
            bail!("slot {slot} still active after 10 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_urls() {
        assert_eq!(
            PgParams::parse("postgres://postgres@127.0.0.1:54329/b1").unwrap(),
            PgParams {
                user: "postgres".into(),
                password: None,
                host: "127.0.0.1".into(),
                port: 54329,
                dbname: "b1".into()
            }
        );
        let p = PgParams::parse("postgresql://u:p@h/db?sslmode=disable").unwrap();
        assert_eq!(
            (p.password.as_deref(), p.port, p.dbname.as_str()),
            (Some("p"), 5432, "db")
        );
    }

    #[test]
    fn variants_have_distinct_tags_and_labels() {
        let all: Vec<Variant> = [Settings::Defaults, Settings::Tuned]
            .iter()
            .flat_map(|&s| [Mode::AtLeastOnce, Mode::ExactlyOnce].map(|m| Variant { mode: m, settings: s }))
            .collect();
        let mut tags: Vec<&str> = all.iter().map(Variant::tag).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), 4);
        assert!(all
            .iter()
            .all(|v| v.tag().chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        assert_eq!(all[3].label(), "Debezium exactly-once, tuned");
    }
}
