//! Exit codes, documented in `outboxd --help` and docs/operations.md.

use std::process::ExitCode;

/// How a command ended: a code and, for failures, the message that says what to fix.
#[derive(Debug)]
pub struct Exit {
    code: u8,
    message: Option<String>,
}

impl Exit {
    /// Success (0).
    pub fn ok() -> Exit {
        Exit {
            code: 0,
            message: None,
        }
    }

    /// The pipeline or the command failed (1).
    pub fn failed(message: impl Into<String>) -> Exit {
        Exit {
            code: 1,
            message: Some(message.into()),
        }
    }

    /// Invalid command line or configuration (2, as clap uses for usage errors).
    pub fn usage(message: impl Into<String>) -> Exit {
        Exit {
            code: 2,
            message: Some(message.into()),
        }
    }

    /// A check found problems (3).
    pub fn check_failed(message: impl Into<String>) -> Exit {
        Exit {
            code: 3,
            message: Some(message.into()),
        }
    }

    /// Fenced: another instance with the same transactional.id took over (4).
    pub fn fenced(message: impl Into<String>) -> Exit {
        Exit {
            code: 4,
            message: Some(message.into()),
        }
    }

    /// Prints the message (if any) to stderr and returns the process exit code.
    pub fn report(self) -> ExitCode {
        if let Some(m) = &self.message {
            eprintln!("outboxd: error: {m}");
        }
        ExitCode::from(self.code)
    }
}
