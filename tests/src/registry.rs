//! A private schema registry (`$OUTBOXD_REGISTRY_BIN serve`) on 127.0.0.1 and a port in 20000..30000, that a
//! test can kill and start again. The registry keeps its schemas in memory: after a restart it is empty.

use crate::wait_until;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The registry process; killed when dropped.
#[derive(Debug)]
pub struct PrivateRegistry {
    bin: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    for _ in 0..200 {
        let port: u16 = rand::random::<u16>() % 10_000 + 20_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..30000 for a private registry")
}

impl PrivateRegistry {
    /// Starts it and waits until `GET /subjects` answers.
    pub async fn start() -> PrivateRegistry {
        let bin = std::env::var("OUTBOXD_REGISTRY_BIN").expect(
            "OUTBOXD_REGISTRY_BIN is not set: run `eval \"$(scripts/services env)\"` after `scripts/services up`",
        );
        let mut registry = PrivateRegistry {
            bin,
            port: free_port(),
            child: None,
        };
        registry.launch().await;
        registry
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let child = Command::new(&self.bin)
            .args(["serve", "--host", "127.0.0.1", "--port", &self.port.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin));
        self.child = Some(child);
        let url = format!("{}/subjects", self.url());
        wait_until(
            "the private registry answers",
            Duration::from_secs(30),
            || async {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            },
        )
        .await;
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Its process id, while it runs (to stop it with SIGSTOP: a registry that accepts but never answers).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts it again on the same port (empty: the registry is in-memory).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }
}
