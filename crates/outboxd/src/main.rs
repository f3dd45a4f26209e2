//! The `outboxd` command line: the pipeline's front door (`run`), its pre-flight (`check`), and the tools an
//! operator needs around it (`slot`, `schemas`, `dlq`). Every command reads the same configuration: one TOML
//! file (`--config`), overridden by `OUTBOXD_<SECTION>__<KEY>` environment variables.

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use cli::exit::Exit;
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Configuration: one TOML file (--config or OUTBOXD_CONFIG; see config/outboxd.toml, every key commented).
Any key can be overridden from the environment: OUTBOXD_<SECTION>__<KEY>, e.g.
  OUTBOXD_SOURCE__PG_URL=postgres://app@db:5432/app   OUTBOXD_KAFKA__BOOTSTRAP_SERVERS=kafka:9092
Secrets can come from files: <key>_file = \"/run/secrets/...\" (e.g. source.password_file).

Exit codes: 0 success; 1 the pipeline or command failed (see the message); 2 invalid command line or
configuration; 3 a check found problems; 4 fenced: another instance with the same transactional.id took over.

Examples:
  outboxd check --config config/outboxd.toml        pre-flight: config, Postgres, Kafka, registry, schemas
  outboxd run --config config/outboxd.toml          relay the outbox until SIGTERM/SIGINT
  outboxd run --config config/outboxd.toml --print-config   show the effective config, secrets redacted
  outboxd slot status --config config/outboxd.toml  slot activity, confirmed LSN, retained WAL
  outboxd schemas check --config config/outboxd.toml   the CI/CD gate: are the schemas compatible?
  outboxd dlq replay --config config/outboxd.toml   re-send dead letters that now fit their schemas";

/// Relays a Postgres transactional outbox to Kafka, exactly once.
///
/// outboxd streams the outbox table's inserts from a logical replication slot (pgoutput), validates each
/// payload against its Avro schema in a Confluent-compatible schema registry, and commits the events and its
/// replication checkpoint in one Kafka transaction. A read_committed consumer sees every outbox row exactly
/// once, in order per aggregate, whatever crashes in between.
#[derive(Debug, Parser)]
#[command(name = "outboxd", version, after_help = AFTER_HELP)]
struct Cli {
    /// The configuration file (TOML). Without it, the defaults and OUTBOXD_* variables are used.
    #[arg(long, short = 'c', env = "OUTBOXD_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log format: `human` for a terminal, `json` for a log pipeline. Levels come from RUST_LOG
    /// (default: info).
    #[arg(long, env = "OUTBOXD_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines with colours on a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline until SIGTERM or SIGINT (then finish or abort the open Kafka transaction, confirm the
    /// committed position to Postgres and exit 0).
    ///
    /// Serves /metrics, /healthz and /readyz on `observability.listen` (default 0.0.0.0:9464).
    ///
    /// Example: outboxd run --config config/outboxd.toml
    Run {
        /// Print the effective configuration (file + environment, secrets redacted) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Pre-flight check: configuration, Postgres (wal_level, version, table, publication, slot), Kafka
    /// (reachability, transaction timeout), schema registry and schema compatibility. Changes nothing.
    ///
    /// Exit 0 when everything passes, 3 when something must be fixed: usable as a CI/CD gate.
    ///
    /// Example: outboxd check --config config/outboxd.toml
    Check,
    /// Manage the replication slot.
    #[command(subcommand)]
    Slot(SlotCommand),
    /// Check or register the event schemas with the schema registry.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Work with the dead-letter topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
enum SlotCommand {
    /// Create the replication slot (pgoutput) and, when `source.create_publication` is on, the publication.
    ///
    /// Example: outboxd slot create --config config/outboxd.toml
    Create,
    /// Drop the replication slot. Refused while the slot is active.
    ///
    /// DANGER: the slot is the position in the WAL. Outbox rows written after the last confirmed position are
    /// never relayed once it is dropped, and the checkpoint in Kafka cannot bring it back.
    ///
    /// Example: outboxd slot drop --yes --config config/outboxd.toml
    Drop {
        /// Confirm that the position may be lost.
        #[arg(long)]
        yes: bool,
    },
    /// Show the slot: active pid and client, confirmed LSN, retained WAL bytes.
    ///
    /// Example: outboxd slot status --config config/outboxd.toml
    Status,
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Check every configured schema against the registry at its subject's compatibility level, without
    /// registering anything. Exit 3 when one is incompatible or missing: the gate to put before a deploy.
    ///
    /// Example: outboxd schemas check --config config/outboxd.toml
    Check,
    /// Check, then register the schemas that are compatible and not yet registered.
    ///
    /// Example: outboxd schemas register --config config/outboxd.toml
    Register,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Re-send dead letters that now fit their schemas.
    ///
    /// Reads the dead-letter topic from where the last replay stopped (consumer group
    /// `<pipeline id>-dlq-replay`), re-validates each event against the current schemas, and produces the ones
    /// that now fit to their intended topics in one Kafka transaction with the group's offset (one transaction
    /// per `kafka.batch.max_events` dead letters), so each is replayed exactly once, even across a crash or a
    /// rerun. Events that still do not fit are appended to the dead-letter topic again (in the same
    /// transaction, `dlq_replays` header incremented) and reported: nothing is lost. Reads up to the end of
    /// the topic as of the start; exit 0 whatever still fails.
    ///
    /// Example: outboxd dlq replay --config config/outboxd.toml
    Replay {
        /// Only report what would be replayed; produce and commit nothing to Kafka. (The schemas are gated as
        /// at `run`'s start: a compatible new version is registered when `avro.auto_register` is on.)
        #[arg(long)]
        dry_run: bool,
        /// Stop after this many dead letters.
        #[arg(long, value_name = "N")]
        max_events: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::logging::init(cli.log_format);
    let exit = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(dispatch(cli)),
        Err(e) => Exit::failed(format!("cannot start the async runtime: {e}")),
    };
    exit.report()
}

async fn dispatch(cli: Cli) -> Exit {
    let config = match cli::load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return Exit::usage(e),
    };
    match cli.command {
        Command::Run { print_config: true } => cli::run::print_config(&config),
        Command::Run { print_config: false } => cli::run::run(config).await,
        Command::Check => cli::check::check(&config).await,
        Command::Slot(SlotCommand::Create) => cli::slot::create(&config).await,
        Command::Slot(SlotCommand::Drop { yes }) => cli::slot::drop(&config, yes).await,
        Command::Slot(SlotCommand::Status) => cli::slot::status(&config).await,
        Command::Schemas(SchemasCommand::Check) => cli::schemas::run(&config, false).await,
        Command::Schemas(SchemasCommand::Register) => cli::schemas::run(&config, true).await,
        Command::Dlq(cmd) => cli::dlq::run(&config, cmd).await,
    }
}
