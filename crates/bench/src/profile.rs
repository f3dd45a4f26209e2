//! A system-wide CPU profile while outboxd drains (`perf record -a`): it shows the walsender, outboxd's
//! threads, the broker and the consumer side by side. The bench sums it up by process and by outboxd thread
//! (`summary.md`); scripts/bench adds `perf report` symbol tables.

use crate::perfsum::{shares, KnownPids};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Sampling frequency in Hz.
const FREQUENCY: &str = "999";

/// A running `perf record`.
#[derive(Debug)]
pub struct Perf {
    child: Child,
}

impl Perf {
    /// Starts recording into `dir/perf.data`; notes outboxd's pid in `dir/outboxd.pid`.
    pub async fn start(dir: &Path, relay_pid: u32) -> Result<Perf> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("outboxd.pid"), relay_pid.to_string())?;
        let log = std::fs::File::create(dir.join("perf-record.log"))?;
        let child = Command::new("perf")
            .args(["record", "-a", "-F", FREQUENCY, "-o"])
            .arg(dir.join("perf.data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting perf record (apt-get install linux-perf)")?;
        Ok(Perf { child })
    }

    /// Stops recording (SIGINT, so perf writes its file) and waits for it.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// Reads `dir/perf.data` back (`perf script`), writes `dir/summary.md` and returns it.
pub async fn summarize(dir: &Path, pids: &KnownPids) -> Result<String> {
    let out = Command::new("perf")
        .args(["script", "-F", "pid,tid,comm,ip,sym,dso", "-i"])
        .arg(dir.join("perf.data"))
        .stderr(Stdio::null())
        .output()
        .await
        .context("perf script")?;
    let script = String::from_utf8_lossy(&out.stdout);
    let name_of = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map_or_else(|_| "other (exited)".to_string(), |c| c.trim().to_string())
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let text = shares(&script, pids, name_of).markdown(cpus);
    std::fs::write(dir.join("summary.md"), &text)?;
    Ok(text)
}
