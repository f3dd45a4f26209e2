//! The command line's own parts: configuration loading and redaction.

pub mod config_file;
