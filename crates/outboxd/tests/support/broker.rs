//! A private Apache Kafka for tests that kill or fill a broker (never the shared one other tests use): its
//! own ports on 127.0.0.1, its own data dir, started by `scripts/services up kafka` itself (with
//! `OUTBOXD_LOCAL` pointing at the test's directory), so that it runs exactly the settings and readiness check
//! of the shared broker. Its controller runs in a JVM of its own (`OUTBOXD_KAFKA_NODES=split`): the broker
//! dies and comes back while the controller lives on, as in a production cluster. (Killing a combined node,
//! controller and all, trips an Apache Kafka 4.4.0 bug that leaves a transaction hanging: docs/reliability.md,
//! Findings.) Killed by pid, never by name.

use outboxd_testkit::wait_until;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// How long the broker may take to die after SIGKILL.
const DIE: Duration = Duration::from_secs(30);

/// The private broker's JVM options: a smaller heap than the shared one's, as several may run at once, and
/// only the C1 compiler (a test's broker lives for minutes: a cheaper start matters more on 2 cores than
/// peak speed; docs/local-services.md has the times).
const HEAP: &str = "-Xms128m -Xmx384m -XX:TieredStopAtLevel=1";

/// A broker of this test's own. Killed, and its data dir removed, when dropped.
#[derive(Debug)]
pub struct PrivateBroker {
    /// `127.0.0.1:port` to bootstrap from.
    pub bootstrap: String,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Ports taken by the private brokers of this process (the OS does not know them until the JVM binds).
static CLAIMED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A free port on 127.0.0.1 below the kernel's ephemeral range (32768 and up): while the broker is down,
/// clients reconnecting to an ephemeral port can connect to themselves (TCP simultaneous open) and keep the
/// restarted broker from binding it.
fn free_port() -> u16 {
    let mut claimed = CLAIMED.lock().unwrap();
    for _ in 0..1_000 {
        let port: u16 = rand::random::<u16>() % 10_000 + 20_000;
        if !claimed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            claimed.push(port);
            return port;
        }
    }
    panic!("no free port in 20000..30000 on 127.0.0.1 for a private broker")
}

/// True while `pid` runs (a zombie, dead but not yet reaped by its new parent, counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|s| s != "Z" && s != "X")
        })
        .unwrap_or(false)
}

impl PrivateBroker {
    /// Starts a broker on fresh ports and a fresh data dir; returns once it answers a metadata request.
    pub async fn start() -> PrivateBroker {
        let dir = std::env::temp_dir().join(outboxd_testkit::unique_name("outboxd_broker"));
        std::fs::create_dir_all(&dir).unwrap();
        let (port, controller_port) = (free_port(), free_port());
        let broker = PrivateBroker {
            bootstrap: format!("127.0.0.1:{port}"),
            port,
            controller_port,
            dir,
        };
        broker.up().await;
        broker
    }

    /// `scripts/services <cmd> kafka` for this broker.
    async fn services(&self, cmd: &str) -> std::process::Output {
        Command::new(repo_root().join("scripts/services"))
            .args([cmd, "kafka"])
            .env("OUTBOXD_LOCAL", &self.dir)
            .env("OUTBOXD_KAFKA_PORT", self.port.to_string())
            .env("OUTBOXD_KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            .env("OUTBOXD_KAFKA_HEAP", HEAP)
            .env("OUTBOXD_KAFKA_NODES", "split")
            .output()
            .await
            .unwrap_or_else(|e| panic!("running scripts/services {cmd} kafka: {e}"))
    }

    /// Starts the broker (formatting its data dir the first time) and waits until it is ready.
    async fn up(&self) {
        let out = self.services("up").await;
        assert!(
            out.status.success(),
            "scripts/services up kafka (private broker on {}) failed: {}\nbroker log:\n{}",
            self.bootstrap,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// The broker JVM's pid, from the pid file `scripts/services` writes.
    fn pid(&self) -> Option<u32> {
        read_pid(&self.dir.join("kafka/broker.pid"))
    }

    /// SIGKILL to the broker (its controller lives on), and waits until the process is gone and its port is
    /// free (a JVM's main thread turns zombie before its other threads have exited and closed its sockets).
    pub async fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, "KILL").await;
            let port = self.port;
            wait_until("the private broker to die and free its port", DIE, || {
                let free = TcpListener::bind(("127.0.0.1", port)).is_ok();
                std::future::ready((!alive(pid) && free).then_some(()))
            })
            .await;
            let _ = std::fs::remove_file(self.dir.join("kafka/broker.pid"));
        }
    }

    /// Starts it again on the same ports and data dir.
    pub async fn restart(&mut self) {
        assert!(!self.is_running(), "the private broker is already running");
        let _ = std::fs::remove_file(self.dir.join("kafka/broker.pid"));
        self.up().await;
    }

    /// Its data directory (`log.dirs`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("kafka/data")
    }

    /// True while the process runs (false once killed or exited by itself).
    pub fn is_running(&self) -> bool {
        self.pid().is_some_and(alive)
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kafka/broker.log")).unwrap_or_default()
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// `kill -<sig> <pid>`.
async fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .await;
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let controller = read_pid(&self.dir.join("kafka/controller.pid"));
        for pid in self.pid().into_iter().chain(controller) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if let Ok(mut claimed) = CLAIMED.lock() {
            claimed.retain(|p| *p != self.port && *p != self.controller_port);
        }
        if std::thread::panicking() || std::env::var_os("OUTBOXD_TEST_KEEP").is_some() {
            eprintln!("the private broker's directory is kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
