//! `outboxd dlq replay`: work in progress (issue 6).

use super::exit::Exit;
use crate::DlqCommand;
use outboxd::PipelineConfig;

/// Runs a `dlq` subcommand.
pub async fn run(_config: &PipelineConfig, _cmd: DlqCommand) -> Exit {
    Exit::failed("dlq replay is not available yet")
}
