//! The consumer under test as a process of its own: this test binary run again with only its ignored
//! `consumer_child` test, configured through the environment, its output appended to a log file. SIGKILL
//! ends it anywhere; SIGTERM is a graceful stop.

use super::projection::Projection;
use super::WAIT;
use outboxd_consumer::ConsumerConfig;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use tokio::process::{Child, Command};

const CONFIG_VAR: &str = "OUTBOXD_CONSUMER_CHILD_CONFIG";
const INSTANCE_VAR: &str = "OUTBOXD_CONSUMER_CHILD_INSTANCE";
const DIRECT_VAR: &str = "OUTBOXD_CONSUMER_CHILD_DIRECT_PG";

/// What the kill tests run as `consumer_child`: the consumer with the [`Projection`] handler until SIGTERM.
pub async fn child_main() {
    let Ok(config) = std::env::var(CONFIG_VAR) else {
        panic!("consumer_child is the consumer process of the kill tests, started by them with {CONFIG_VAR}");
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let config: ConsumerConfig = serde_json::from_str(&config).expect("the child's configuration");
    let direct = match std::env::var(DIRECT_VAR) {
        Ok(url) => Some(tokio::sync::Mutex::new(outboxd_testkit_connect(&url).await)),
        Err(_) => None,
    };
    let handler = Projection {
        direct,
        instance: std::env::var(INSTANCE_VAR).unwrap_or_else(|_| "child".into()),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    outboxd_consumer::run(config, handler, async move {
        term.recv().await;
    })
    .await
    .expect("the consumer failed");
}

async fn outboxd_testkit_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// One consumer process. Killed when dropped.
#[derive(Debug)]
pub struct ChildConsumer {
    child: Child,
    pub pid: u32,
}

impl ChildConsumer {
    /// Starts `consumer_child` of this test binary with `config`, appending its output to `log`.
    /// `direct_pg`: the database the handler writes to when the store gives no transaction (Redis).
    pub fn spawn(
        config: &ConsumerConfig,
        instance: &str,
        log: &Path,
        direct_pg: Option<&str>,
    ) -> ChildConsumer {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "consumer_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CONFIG_VAR, serde_json::to_string(config).unwrap())
        .env(INSTANCE_VAR, instance)
        .env(
            "RUST_LOG",
            "warn,outboxd_consumer=info,outboxd_consumer::partition=debug",
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
        if let Some(url) = direct_pg {
            cmd.env(DIRECT_VAR, url);
        }
        let child = cmd.spawn().expect("starting the consumer child");
        let pid = child.id().unwrap();
        ChildConsumer { child, pid }
    }

    /// SIGKILL, and waits until it is gone.
    pub async fn kill(&mut self) -> ExitStatus {
        let _ = self.child.start_kill();
        self.wait().await
    }

    /// SIGTERM, and waits for a clean exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {}", self.pid);
        self.wait().await
    }

    async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("consumer child {} did not exit", self.pid))
            .unwrap()
    }

    /// Exited already (crashed)?
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits (up to [`WAIT`]) until `progressed` says the child applies events; fails at once, with the log's
    /// tail, when it exits on its own.
    pub async fn wait_applying<Fut>(&mut self, log: &ChildLog, what: &str, progressed: impl Fn() -> Fut)
    where
        Fut: std::future::Future<Output = bool>,
    {
        let child = std::cell::RefCell::new(self);
        outboxd_testkit::wait_until(what, WAIT, || async {
            if let Some(s) = child.borrow_mut().exited() {
                panic!(
                    "{what}: the consumer exited on its own ({}):\n{}",
                    describe(s),
                    log.tail(40)
                );
            }
            progressed().await.then_some(())
        })
        .await;
    }
}

/// A log file for the children, kept when the test fails.
#[derive(Debug)]
pub struct ChildLog {
    pub path: PathBuf,
}

impl ChildLog {
    pub fn new(test: &str) -> ChildLog {
        ChildLog {
            path: std::env::temp_dir().join(format!("{}.log", outboxd_testkit::unique_name(test))),
        }
    }

    /// Lines of the log containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The end of the log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for ChildLog {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("OUTBOXD_TEST_KEEP").is_some() {
            eprintln!("the consumer log is kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A short description of an exit status.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}
