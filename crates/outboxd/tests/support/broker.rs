//! A private crabka-broker for tests that kill or load a broker (never the shared one other tests use): its
//! own data dir and port, started the way `scripts/services` starts the shared one (`up_kafka`).
//!
//! The broker's internal controller binds `<listen-ip>:9093`, fixed, and the shared broker owns 127.0.0.1:9093:
//! a private broker takes the first loopback address from 127.0.0.2 (127.0.0.3 excepted: a second set of
//! services may use it) whose port 9093 is free.

use outboxd_testkit::wait_until;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How long the broker may take to open its port, and to accept the feature update.
const READY: Duration = Duration::from_secs(60);

/// A broker of this test's own. Killed, and its data dir removed, when dropped.
#[derive(Debug)]
pub struct PrivateBroker {
    /// `ip:port` to bootstrap from.
    pub bootstrap: String,
    addr: SocketAddr,
    dir: PathBuf,
    bin: String,
    child: Option<Child>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Loopback addresses (last octet) taken by the private brokers of this process.
static CLAIMED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// A loopback address whose controller port (9093) is free, and a free port on it. The port is taken below
/// the kernel's ephemeral range (32768 and up): while the broker is down, clients reconnecting to an ephemeral
/// port can connect to themselves (TCP simultaneous open) and keep the restarted broker from binding it.
fn free_address() -> SocketAddr {
    let mut claimed = CLAIMED.lock().unwrap();
    // 127.0.0.3 is left to a second set of `scripts/services` (OUTBOXD_KAFKA_HOST).
    for last in (2..=32u8).filter(|l| *l != 3 && !claimed.contains(l)) {
        let ip = Ipv4Addr::new(127, 0, 0, last);
        if TcpListener::bind((ip, 9093)).is_err() {
            continue; // another broker's controller
        }
        for _ in 0..100 {
            let port: u16 = rand::random::<u16>() % 10_000 + 20_000;
            if TcpListener::bind((ip, port)).is_ok() {
                claimed.push(last);
                return SocketAddr::from((ip, port));
            }
        }
    }
    panic!("no loopback address in 127.0.0.2..32 with port 9093 and a port in 20000..30000 free for a private broker")
}

impl PrivateBroker {
    /// Starts a broker on a fresh data dir and sets `transaction.version=1` (as `scripts/services` does once
    /// per data dir). Needs `OUTBOXD_BROKER_BIN` (from `scripts/services env`).
    pub async fn start() -> PrivateBroker {
        let bin = std::env::var("OUTBOXD_BROKER_BIN").unwrap_or_else(|_| {
            panic!(
                "OUTBOXD_BROKER_BIN is not set: run `scripts/services up && eval \"$(scripts/services env)\"` \
                 (it builds crabka-broker and exports its path)"
            )
        });
        let addr = free_address();
        let dir = std::env::temp_dir().join(outboxd_testkit::unique_name("outboxd_broker"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("data/meta.properties.json"),
            format!(
                r#"{{"cluster_id":"{}","directory_id":"{}","version":1}}"#,
                random_uuid(),
                random_uuid()
            ),
        )
        .unwrap();
        let mut broker = PrivateBroker {
            bootstrap: addr.to_string(),
            addr,
            dir,
            bin,
            child: None,
        };
        broker.launch().await;
        let (script, bootstrap) = (
            repo_root().join("scripts/kafka-update-features.py"),
            broker.bootstrap.clone(),
        );
        wait_until(
            "the private broker to accept transaction.version=1",
            READY,
            || {
                let (script, bootstrap) = (script.clone(), bootstrap.clone());
                async move {
                    let out = Command::new("python3")
                        .arg(&script)
                        .args(["--bootstrap", &bootstrap, "--feature", "transaction.version=1"])
                        .output()
                        .await
                        .expect("running python3 scripts/kafka-update-features.py");
                    out.status.success().then_some(())
                }
            },
        )
        .await;
        broker
    }

    /// Starts the process on the data dir and waits until its port accepts connections.
    async fn launch(&mut self) {
        assert!(self.child.is_none(), "the private broker is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["--listen-addr", &self.bootstrap, "--log-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--metrics-listen-addr",
                "none",
                "--partition-disk-scan-interval-secs",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin));
        self.child = Some(child);
        let addr = self.addr;
        let log = self.dir.join("broker.log");
        wait_until(&format!("the private broker to listen on {addr}"), READY, || {
            let log = log.clone();
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            async move {
                if let Some(status) = exited {
                    let sockets = std::process::Command::new("ss")
                        .args(["-tanp"])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    let ours: Vec<&str> = sockets
                        .lines()
                        .filter(|l| l.contains(&addr.ip().to_string()))
                        .collect();
                    panic!(
                        "the private broker exited ({status}); sockets on its address:\n{}\n{}:\n{}",
                        ours.join("\n"),
                        log.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            tokio::time::timeout(READY, child.wait())
                .await
                .expect("the private broker did not die")
                .unwrap();
        }
    }

    /// Starts it again on the same address and data dir.
    pub async fn restart(&mut self) {
        self.launch().await;
    }

    /// Its data directory (`--log-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// True while the process runs (false once killed or exited by itself).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Forgets a process that exited by itself, so that [`PrivateBroker::restart`] can start it again.
    pub async fn reap(&mut self) {
        if !self.is_running() {
            self.kill().await;
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if let std::net::IpAddr::V4(ip) = self.addr.ip() {
            if let Ok(mut claimed) = CLAIMED.lock() {
                claimed.retain(|l| *l != ip.octets()[3]);
            }
        }
        if std::env::var_os("OUTBOXD_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
