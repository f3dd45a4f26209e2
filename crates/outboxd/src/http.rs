//! The observability endpoint: `/metrics` (Prometheus text), `/healthz` (the process is alive and the pipeline
//! has not failed) and `/readyz` (streaming from the slot and confirming). A deliberately small HTTP/1.1
//! responder: three GET routes, one request per connection, no dependency beyond tokio.

use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Liveness and readiness flags, set by the pipeline and read by the endpoint.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    failed: AtomicBool,
}

impl Health {
    /// A new, shareable health state: alive, not ready.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Marks the pipeline as streaming and confirming (`true`) or not (`false`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Marks the pipeline as failed for good: `/healthz` answers 503 from then on.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.ready.store(false, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Binds `addr` and serves the three routes until the task is dropped. Returns the bound address (useful
/// with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    health: Arc<Health>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let _ = respond(stream, &metrics, &health).await;
            });
        }
    });
    Ok((bound, task))
}

async fn respond(mut stream: TcpStream, metrics: &PrometheusHandle, health: &Health) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read until the end of the request head (GET requests have no body), at most 4 KiB.
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/healthz") if health.failed.load(Ordering::Relaxed) => {
            ("503 Service Unavailable", "text/plain", "failed\n".into())
        }
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", "/readyz") if health.is_ready() => ("200 OK", "text/plain", "ready\n".into()),
        ("GET", "/readyz") => ("503 Service Unavailable", "text/plain", "not ready\n".into()),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics, /healthz, /readyz\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
