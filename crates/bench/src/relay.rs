//! outboxd as the system under test: the real binary (`outboxd run --config FILE`) as a child process, or
//! until the binary has `run`, the library pipeline hosted in a child process of the bench (see `host`). It
//! gets a generated configuration (the run's database, slot, topics and transactional id; everything else
//! default); its peak RSS is read from `/proc/<pid>/status` (VmHWM) before it is stopped.
//!
//! With the binary, other settings can be given as `OUTBOXD_<SECTION>__<KEY>` environment variables, which
//! the child inherits (e.g. `OUTBOXD_KAFKA__BATCH__LINGER_MS=20`).

use crate::env::Services;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The topics and ids of one run.
#[derive(Clone, Debug)]
pub struct RunTopics {
    /// Where the events go (fixed routing).
    pub events: String,
    /// Dead letters (none expected).
    pub dlq: String,
    /// The pipeline's checkpoint topic.
    pub checkpoints: String,
}

impl RunTopics {
    /// Topic names derived from the run name.
    pub fn for_run(name: &str) -> RunTopics {
        RunTopics {
            events: format!("{name}.events"),
            dlq: format!("{name}.dlq"),
            checkpoints: format!("{name}.checkpoints"),
        }
    }

    /// All of them.
    pub fn all(&self) -> Vec<String> {
        vec![self.events.clone(), self.dlq.clone(), self.checkpoints.clone()]
    }
}

/// How outboxd is started: `<program> <args...> <config file>`.
#[derive(Clone, Debug)]
pub struct RelayCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the config file.
    pub args: Vec<String>,
}

impl RelayCommand {
    /// `outboxd run --config FILE`.
    pub fn binary(bin: &Path) -> RelayCommand {
        RelayCommand {
            program: bin.to_path_buf(),
            args: vec!["run".into(), "--config".into()],
        }
    }

    /// `outboxd-bench --relay-host FILE`: the library pipeline in a child process.
    pub fn host() -> Result<RelayCommand> {
        let program = std::env::current_exe().context("locating the bench executable")?;
        Ok(RelayCommand {
            program,
            args: vec!["--relay-host".into()],
        })
    }

    /// The binary when it has a `run` command, else the host.
    pub async fn detect(bin: &Path) -> Result<RelayCommand> {
        let has_run = Command::new(bin)
            .args(["run", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if has_run {
            Ok(RelayCommand::binary(bin))
        } else {
            RelayCommand::host()
        }
    }

    /// For the report.
    pub fn describe(&self) -> String {
        format!("{} {} <config.toml>", self.program.display(), self.args.join(" "))
    }
}

/// What the relay is started with.
#[derive(Debug)]
pub struct RelaySpec<'a> {
    /// How to start it.
    pub command: &'a RelayCommand,
    /// Directory for the generated config and the log.
    pub work_dir: &'a Path,
    /// The services.
    pub services: &'a Services,
    /// The run's name: pipeline id and transactional id.
    pub name: &'a str,
    /// URL of the run's database.
    pub db_url: &'a str,
    /// The slot, created by the bench.
    pub slot: &'a str,
    /// The publication, created by the bench.
    pub publication: &'a str,
    /// Topics of the run.
    pub topics: &'a RunTopics,
    /// Directory of the `.avsc` files.
    pub schema_dir: &'a Path,
    /// Extra settings (`kafka.batch.linger_ms=1000`), applied over the generated ones.
    pub overrides: &'a [String],
}

impl RelaySpec<'_> {
    /// The generated configuration file's text.
    pub fn config_toml(&self) -> Result<String> {
        let value = serde_json::json!({
            "pipeline_id": self.name,
            "source": {
                "pg_url": self.db_url,
                "slot": self.slot,
                "publication": self.publication,
                "table": "public.outbox",
                "create_slot": false,
                "create_publication": false,
            },
            "avro": {
                "registry_url": self.services.registry_url,
                "schema_dir": self.schema_dir,
            },
            "kafka": {
                "bootstrap_servers": self.services.kafka_bootstrap,
                "transactional_id": self.name,
                "dlq_topic": self.topics.dlq,
                "checkpoint_topic": self.topics.checkpoints,
                "routing": { "mode": "fixed", "fixed_topic": self.topics.events },
            },
            // Metrics on, as in production, on a free port (runs must not collide with another outboxd).
            "observability": { "listen": "127.0.0.1:0" },
        });
        let mut value = value;
        for o in self.overrides {
            apply_override(&mut value, o)?;
        }
        toml::to_string(&value).context("writing the relay config as TOML")
    }
}

/// Sets `dotted.key=value` in a JSON object tree; the value is a TOML literal (number, boolean, array,
/// inline table, quoted string) or else taken as a plain string.
pub fn apply_override(config: &mut serde_json::Value, setting: &str) -> Result<()> {
    let (key, raw) = setting
        .split_once('=')
        .with_context(|| format!("--relay-set {setting:?}: expected KEY=VALUE"))?;
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .map_or_else(
            || Ok(serde_json::Value::String(raw.to_string())),
            serde_json::to_value,
        )?;
    let mut node = config;
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, parents) = parts.split_last().context("empty key")?;
    for p in parents {
        let map = node
            .as_object_mut()
            .with_context(|| format!("--relay-set {key}: `{p}` is not a table"))?;
        node = map.entry(p.to_string()).or_insert_with(|| serde_json::json!({}));
    }
    let map = node
        .as_object_mut()
        .with_context(|| format!("--relay-set {key}: not a table"))?;
    map.insert(last.to_string(), parsed);
    Ok(())
}

/// A running outboxd.
#[derive(Debug)]
pub struct Relay {
    child: Child,
    pid: u32,
    /// When it was spawned: the start of the measured time.
    pub started: Instant,
    /// Its log file.
    pub log: PathBuf,
}

impl Relay {
    /// Writes the config and spawns the relay command with it, output to `outboxd.log`.
    pub fn start(spec: &RelaySpec<'_>) -> Result<Relay> {
        std::fs::create_dir_all(spec.work_dir)?;
        let config = spec.work_dir.join("outboxd.toml");
        std::fs::write(&config, spec.config_toml()?)?;
        let log = spec.work_dir.join("outboxd.log");
        let out = std::fs::File::create(&log)?;
        let started = Instant::now();
        let child = Command::new(&spec.command.program)
            .args(&spec.command.args)
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", spec.command.describe()))?;
        let pid = child.id().context("outboxd exited at once")?;
        Ok(Relay {
            child,
            pid,
            started,
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails (with the end of its log) when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "outboxd exited ({status}); last log lines:\n{}",
                log_tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// Peak resident set size so far, in bytes (VmHWM).
    pub fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading /proc/<pid>/status of outboxd")?;
        vm_hwm_bytes(&status).context("no VmHWM line in /proc/<pid>/status")
    }

    /// Asks it to stop (SIGTERM), kills it after `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            eprintln!("bench: outboxd did not stop within {grace:?} of SIGTERM; killing it");
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// VmHWM from a `/proc/<pid>/status` text, in bytes.
pub fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm() {
        let status = "Name:\toutboxd\nVmPeak:\t  200000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(51_234 * 1024));
        assert_eq!(vm_hwm_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn config_names_the_run() {
        let services = Services {
            pg_url: "postgres://postgres@h:1/postgres".into(),
            kafka_bootstrap: "h:2".into(),
            registry_url: "http://h:3".into(),
            pg_bin: "/bin".into(),
        };
        let topics = RunTopics::for_run("r1");
        let command = RelayCommand::binary(Path::new("outboxd"));
        let spec = RelaySpec {
            command: &command,
            work_dir: Path::new("/tmp"),
            services: &services,
            name: "r1",
            db_url: "postgres://postgres@h:1/r1",
            slot: "r1_relay",
            publication: "bench_pub",
            topics: &topics,
            schema_dir: Path::new("/repo/config/schemas"),
            overrides: &[
                "kafka.batch.linger_ms=1000".into(),
                "kafka.compression=lz4".into(),
            ],
        };
        let text = spec.config_toml().unwrap();
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["source"]["slot"].as_str(), Some("r1_relay"));
        assert_eq!(parsed["source"]["create_slot"].as_bool(), Some(false));
        assert_eq!(
            parsed["kafka"]["routing"]["fixed_topic"].as_str(),
            Some("r1.events")
        );
        assert_eq!(
            parsed["avro"]["schema_dir"].as_str(),
            Some("/repo/config/schemas")
        );
        assert_eq!(parsed["kafka"]["batch"]["linger_ms"].as_integer(), Some(1000));
        assert_eq!(parsed["kafka"]["compression"].as_str(), Some("lz4"));
        assert_eq!(parsed["kafka"]["transactional_id"].as_str(), Some("r1"));
        let mut v = serde_json::json!({"a": 1});
        assert!(apply_override(&mut v, "a.b=2").is_err());
        assert!(apply_override(&mut v, "novalue").is_err());
    }
}
