//! One-shot commands of the `outboxd` binary for the CLI suites (`check`, `dlq replay`, `run --print-config`):
//! run to completion with a deadline, exit code and output captured. Config files come from
//! `support::binary::write_config` / `Env::config_file`; `outboxd run` as a child is `support::binary::Outboxd`.

#![allow(dead_code)]

use outboxd_testkit::unique_name;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long one command of the binary may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A temporary directory, deleted on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a finished command left.
#[derive(Debug)]
pub struct Output {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout and stderr together, for assertions on what the operator sees.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Asserts the exit code, showing everything the command printed when it differs.
    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}, got {:?} (signal {:?})\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.signal,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The binary under test, with no inherited configuration variables (the services' `OUTBOXD_PG_URL` and
/// such have no `__` and are not configuration; `OUTBOXD_CONFIG` and `OUTBOXD_FAULT` would be).
pub fn outboxd(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_outboxd"));
    cmd.args(args)
        .env_remove("OUTBOXD_CONFIG")
        .env_remove("OUTBOXD_FAULT")
        .env("RUST_LOG", "info,rdkafka=warn,librdkafka=off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("OUTBOXD_") && k.contains("__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs `outboxd <args> --config <config>` to completion (with a deadline).
pub async fn run(args: &[&str], config: &Path) -> Output {
    run_with(outboxd(args).arg("--config").arg(config)).await
}

/// Runs a prepared command to completion (with a deadline).
pub async fn run_with(cmd: &mut tokio::process::Command) -> Output {
    use std::os::unix::process::ExitStatusExt;
    let child = cmd.spawn().expect("starting the outboxd binary");
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}"))
        .unwrap();
    Output {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().unwrap().port()
}
