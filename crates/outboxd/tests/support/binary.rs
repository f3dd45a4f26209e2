//! The real `outboxd run` binary as a child process: a generated config file, a log file, SIGKILL / SIGTERM,
//! exit status and peak memory (`VmHWM`).

use super::WAIT;
use outboxd::PipelineConfig;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

/// The binary under test (built by cargo for this test target).
pub const OUTBOXD: &str = env!("CARGO_BIN_EXE_outboxd");

/// Writes `config` as an `outboxd` TOML configuration file.
pub fn write_config(config: &PipelineConfig, path: &Path) {
    let text = toml::to_string(config).unwrap_or_else(|e| panic!("config as TOML: {e}"));
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A log file for `outboxd` children, in the temporary directory: removed when the test passes, kept (and its
/// path printed) when it fails or `OUTBOXD_TEST_KEEP` is set.
#[derive(Debug)]
pub struct LogFile {
    /// Its path.
    pub path: PathBuf,
}

impl LogFile {
    /// A fresh log file name for this test.
    pub fn new(test: &str) -> LogFile {
        let path = std::env::temp_dir().join(format!("{}.log", outboxd_testkit::unique_name(test)));
        LogFile { path }
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("OUTBOXD_TEST_KEEP").is_some() {
            eprintln!("the outboxd log is kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One `outboxd run` process. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Outboxd {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Where its stdout and stderr go (appended: several instances of a test share one log).
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

impl Outboxd {
    /// Starts `outboxd run --config <config>`, with `OUTBOXD_FAULT=<fault>` when given. Its output is appended
    /// to `log`. `OUTBOXD_<SECTION>__<KEY>` overrides of the calling environment are not passed on, so the
    /// file alone configures it.
    pub fn spawn(config: &Path, log: &Path, fault: Option<&str>) -> Outboxd {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(OUTBOXD);
        cmd.args(["run", "--config"])
            .arg(config)
            .env_remove("OUTBOXD_FAULT")
            .env(
                "RUST_LOG",
                std::env::var("OUTBOXD_TEST_CHILD_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        for (var, _) in std::env::vars() {
            if var.starts_with("OUTBOXD_") && var.contains("__") {
                cmd.env_remove(var);
            }
        }
        if let Some(f) = fault {
            cmd.env("OUTBOXD_FAULT", f);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {OUTBOXD}: {e}"));
        let pid = child.id().expect("a running child has a pid");
        Outboxd {
            child,
            pid,
            log: log.to_path_buf(),
            status: None,
        }
    }

    /// Its exit status, if it has exited (does not wait).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Waits for it to exit, at most `timeout`; panics with the end of its log otherwise.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status.unwrap();
                self.status = Some(status);
                status
            }
            Err(_) => panic!(
                "outboxd (pid {}) did not exit within {timeout:?}; its log ends with:\n{}",
                self.pid,
                self.log_tail(30)
            ),
        }
    }

    /// SIGKILL, then waits for the process to be gone. Returns its status (it may have died on its own first).
    pub async fn kill(&mut self) -> ExitStatus {
        if self.exited().is_none() {
            let _ = self.child.start_kill();
        }
        self.wait(WAIT).await
    }

    /// Sends SIGTERM (graceful stop: commit or abort, confirm, exit 0).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// SIGSTOP: the process freezes where it is (a stalled relay: GC pause, overloaded host, debugger), its
    /// connections left open.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Outboxd::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid);
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait(WAIT).await
    }

    /// Peak resident set size so far (`VmHWM` of /proc/<pid>/status), in KiB; `None` once it has exited.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The last `n` lines of the log file.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// A short description of an exit status: `code 0`, `signal 9 (SIGKILL)`, `signal 6 (SIGABRT)`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("code {c}"),
        (None, Some(9)) => "signal 9 (SIGKILL)".into(),
        (None, Some(6)) => "signal 6 (SIGABRT)".into(),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "unknown".into(),
    }
}
