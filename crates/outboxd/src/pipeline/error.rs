//! [`PipelineError`]: why [`crate::run`] stopped with an error. Every variant means "exit non-zero"; restartable
//! failures never surface here (the pipeline restarts by itself), unless `restart.max_restarts` runs out.

use outboxd_avro::AvroError;
use outboxd_kafka::SinkError;
use outboxd_record::RecordError;
use outboxd_wal::WalError;

/// Why the pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The Kafka sink must halt: fenced by another instance, a fatal producer error, a topic or checkpoint
    /// problem. Nothing more was confirmed to Postgres.
    #[error(transparent)]
    Sink(SinkError),

    /// The WAL source must halt (server settings, slot held by another process, malformed stream).
    #[error(transparent)]
    Wal(WalError),

    /// The Avro stage must halt (schema gate failed, registry refused a request, bad schema file).
    #[error(transparent)]
    Avro(AvroError),

    /// Restartable failures kept coming: `restart.max_restarts` restarts in a row without a commit.
    #[error("gave up after {restarts} restarts in a row without a commit; the last failure: {last}")]
    TooManyRestarts {
        /// Restarts in a row.
        restarts: u32,
        /// The last failure, typed.
        #[source]
        last: Box<PipelineError>,
    },

    /// `OUTBOXD_FAULT` is set but not understood.
    #[error("OUTBOXD_FAULT: {0}")]
    Fault(String),
}

impl PipelineError {
    /// True when another instance with the same transactional id took over.
    pub fn is_fenced(&self) -> bool {
        matches!(self, PipelineError::Sink(e) if e.is_fenced())
    }
}

/// A failure of one attempt, by what the restart loop must do.
#[derive(Debug)]
pub(crate) enum AttemptFailure {
    /// Abort, drop the source, start again from the top after a backoff. The stage that failed (`kafka`,
    /// `postgres`, `registry`: the `reason` label of the restarts metric) and the failure, typed.
    Restart(&'static str, PipelineError),
    /// Stop with this error.
    Halt(PipelineError),
}

impl From<SinkError> for AttemptFailure {
    fn from(e: SinkError) -> Self {
        if e.is_restartable() {
            AttemptFailure::Restart("kafka", PipelineError::Sink(e))
        } else {
            AttemptFailure::Halt(PipelineError::Sink(e))
        }
    }
}

impl From<WalError> for AttemptFailure {
    fn from(e: WalError) -> Self {
        if e.is_retriable() {
            AttemptFailure::Restart("postgres", PipelineError::Wal(e))
        } else {
            AttemptFailure::Halt(PipelineError::Wal(e))
        }
    }
}

impl From<RecordError> for AttemptFailure {
    fn from(e: RecordError) -> Self {
        let retriable = e.is_retriable();
        let e = match e.into_avro() {
            Ok(e) => PipelineError::Avro(e),
            Err(config) => PipelineError::Config(config),
        };
        if retriable {
            AttemptFailure::Restart("registry", e)
        } else {
            AttemptFailure::Halt(e)
        }
    }
}

impl From<AvroError> for AttemptFailure {
    fn from(e: AvroError) -> Self {
        if e.is_retriable() {
            AttemptFailure::Restart("registry", PipelineError::Avro(e))
        } else {
            AttemptFailure::Halt(PipelineError::Avro(e))
        }
    }
}
