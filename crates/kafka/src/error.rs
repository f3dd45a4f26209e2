//! [`SinkError`], split by what the caller must do, and the classification of librdkafka errors into it.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// What went wrong in the sink, grouped by what the caller must do:
/// - [`SinkError::is_restartable`]: abort, drop the replication connection and start again from the last
///   checkpoint (the broker and Postgres still hold everything needed);
/// - everything else halts: confirm nothing more and exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration cannot work. Halt.
    #[error("invalid Kafka sink configuration: {0}")]
    Config(String),

    /// The broker did not answer in time or said "try again", past the retry budget. Restart from the last
    /// checkpoint (with backoff).
    #[error(
        "Kafka {op} kept failing with a retriable error: {source}. Restarting from the last checkpoint; check \
         that the brokers in kafka.bootstrap_servers are reachable"
    )]
    Unavailable {
        /// The operation that failed.
        op: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },

    /// The Kafka transaction had to be aborted (a record failed, the broker timed the transaction out, ...).
    /// Restart from the last checkpoint: nothing of the aborted transaction is visible to `read_committed`.
    #[error(
        "Kafka transaction aborted during {op}: {source}. Restarting from the last checkpoint (if this repeats \
         at the same position, check kafka.transaction_timeout_ms against the largest outbox transaction and the \
         broker's transaction.max.timeout.ms)"
    )]
    Aborted {
        /// The operation that failed.
        op: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },

    /// The broker aborted the open transaction because it outlived `transaction.timeout.ms` (the relay or the
    /// broker stalled), and bumped the producer epoch doing so: librdkafka then reports this producer as
    /// fenced, although no other instance took over. Restart from the last checkpoint with a new producer.
    #[error(
        "Kafka transaction open for {open_for:?}, past kafka.transaction_timeout_ms ({timeout:?}): the broker \
         aborted it and fenced this producer's epoch ({detail}, during {op}). Restarting from the last \
         checkpoint with a new producer; if this repeats, raise kafka.transaction_timeout_ms or look for what \
         stalls outboxd or the broker"
    )]
    TimedOut {
        /// The operation that failed.
        op: &'static str,
        /// How long the transaction had been open.
        open_for: std::time::Duration,
        /// The configured transaction timeout.
        timeout: std::time::Duration,
        /// librdkafka's description.
        detail: String,
    },

    /// Another producer with the same `transactional.id` initialised transactions after this one. Halt.
    #[error(
        "producer fenced during {op}: another instance with transactional.id {transactional_id:?} took over \
         ({detail}). This instance stops and confirms nothing more; the newer one owns the stream. If no other \
         instance should be running, look for a duplicate deployment sharing this transactional.id"
    )]
    Fenced {
        /// The operation that failed.
        op: &'static str,
        /// This producer's transactional id.
        transactional_id: String,
        /// librdkafka's description.
        detail: String,
    },

    /// The producer hit an unrecoverable error (authorisation, unsupported broker, ...). Halt.
    #[error(
        "fatal Kafka producer error during {op}: {detail}. Stopping without confirming anything more; check the \
         broker logs, ACLs for the transactional id and the topics, and the broker version (transactions need \
         Kafka 0.11+ semantics)"
    )]
    Fatal {
        /// The operation that failed.
        op: &'static str,
        /// librdkafka's description.
        detail: String,
    },

    /// A topic cannot be created or used (not authorised, policy, bad settings). Halt.
    #[error("topic {topic:?} cannot be created: {code}. {hint}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
        /// What to change.
        hint: &'static str,
    },

    /// The checkpoint record exists but is unreadable. Halt: guessing a position would lose or duplicate.
    #[error(
        "the checkpoint of pipeline {pipeline_id:?} in topic {topic:?} is unreadable: {detail}. Fix or delete \
         that record (deleting it makes the next start at-least-once for the unconfirmed tail)"
    )]
    Checkpoint {
        /// The pipeline whose checkpoint is bad.
        pipeline_id: String,
        /// The checkpoint topic.
        topic: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The sink was driven out of order (a bug in the caller). Halt.
    #[error("Kafka sink used out of order: {0} (this is a bug in outboxd, please report it)")]
    Misuse(&'static str),
}

impl SinkError {
    /// True when the pipeline should abort, reconnect and resume from the last checkpoint; false when it
    /// must stop.
    pub fn is_restartable(&self) -> bool {
        matches!(
            self,
            SinkError::Unavailable { .. } | SinkError::Aborted { .. } | SinkError::TimedOut { .. }
        )
    }

    /// True when another instance with the same transactional id took over.
    pub fn is_fenced(&self) -> bool {
        matches!(self, SinkError::Fenced { .. })
    }
}

/// The error codes that mean "a newer producer with this transactional id exists".
pub(crate) fn is_fencing_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionCoordinatorFenced
    )
}

/// How to react to one failed librdkafka call.
#[derive(Debug)]
pub(crate) enum Reaction {
    /// Retry the same call after a backoff (and give up as [`SinkError::Unavailable`] past the budget).
    Retry(KafkaError),
    /// Stop trying: the error says what the caller must do.
    Fail(SinkError),
}

/// Context for classifying a failure.
#[derive(Debug)]
pub(crate) struct FailedCall<'a> {
    /// The operation.
    pub op: &'static str,
    /// This producer's transactional id.
    pub transactional_id: &'a str,
    /// The producer's fatal error, if it has one (`rd_kafka_fatal_error`).
    pub fatal: Option<(RDKafkaErrorCode, String)>,
    /// How long the current transaction has been open, and the transaction timeout, if one is open.
    pub txn_age: Option<(std::time::Duration, std::time::Duration)>,
}

impl FailedCall<'_> {
    /// Maps a librdkafka error onto the state machine: fenced/fatal halt, abortable restarts, retriable retries.
    pub(crate) fn classify(self, err: KafkaError) -> Reaction {
        let FailedCall {
            op,
            transactional_id,
            fatal,
            txn_age,
        } = self;
        // A fence met by a transaction older than the timeout is the broker's abort of that transaction (it
        // bumps the epoch), not a newer instance: on Apache Kafka both arrive as the same fatal error. Should a
        // newer instance also exist, the restart's init_transactions fences it in turn and one of the two
        // ends up owning the stream; fencing keeps it exactly once either way.
        let fenced = |detail: String| match txn_age {
            Some((open_for, timeout)) if open_for >= timeout => SinkError::TimedOut {
                op,
                open_for,
                timeout,
                detail,
            },
            _ => SinkError::Fenced {
                op,
                transactional_id: transactional_id.to_string(),
                detail,
            },
        };
        if let Some((code, detail)) = fatal {
            return Reaction::Fail(if is_fencing_code(code) {
                fenced(detail)
            } else {
                SinkError::Fatal { op, detail }
            });
        }
        match &err {
            KafkaError::Transaction(rd) => {
                if is_fencing_code(rd.code()) {
                    Reaction::Fail(fenced(rd.string()))
                } else if rd.is_fatal() {
                    Reaction::Fail(SinkError::Fatal {
                        op,
                        detail: rd.string(),
                    })
                } else if rd.txn_requires_abort() {
                    Reaction::Fail(SinkError::Aborted { op, source: err })
                } else if rd.is_retriable() {
                    Reaction::Retry(err)
                } else {
                    // Not retriable, not abortable, not fatal (e.g. a state error): the safe way out is a
                    // restart, which re-initialises the producer and resumes from the checkpoint.
                    Reaction::Fail(SinkError::Aborted { op, source: err })
                }
            }
            other => match other.rdkafka_error_code() {
                Some(code) if is_fencing_code(code) => Reaction::Fail(fenced(other.to_string())),
                Some(RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut) => {
                    Reaction::Retry(err)
                }
                Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown) => {
                    Reaction::Retry(err)
                }
                _ => Reaction::Fail(SinkError::Aborted { op, source: err }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn failure(fatal: Option<(RDKafkaErrorCode, String)>) -> FailedCall<'static> {
        FailedCall {
            op: "commit",
            transactional_id: "outboxd-slot",
            fatal,
            txn_age: None,
        }
    }

    #[test]
    fn a_fence_met_by_a_transaction_past_its_timeout_is_the_brokers_abort_and_restarts() {
        let epoch_bumped = || {
            Some((
                RDKafkaErrorCode::ProducerFenced,
                "Failed to add partitions to transaction: fenced".into(),
            ))
        };
        let old = FailedCall {
            txn_age: Some((Duration::from_secs(7), Duration::from_secs(5))),
            ..failure(epoch_bumped())
        }
        .classify(KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced));
        let Reaction::Fail(err) = old else { panic!() };
        assert!(
            matches!(err, SinkError::TimedOut { .. }) && err.is_restartable() && !err.is_fenced(),
            "{err}"
        );
        assert!(err.to_string().contains("transaction_timeout_ms"), "{err}");
        // The same error met by a young transaction is a newer instance's fence: halt.
        let young = FailedCall {
            txn_age: Some((Duration::from_secs(1), Duration::from_secs(5))),
            ..failure(epoch_bumped())
        }
        .classify(KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced));
        let Reaction::Fail(err) = young else { panic!() };
        assert!(err.is_fenced() && !err.is_restartable(), "{err}");
    }

    #[test]
    fn fatal_fencing_halts_with_a_takeover_message() {
        let r = failure(Some((RDKafkaErrorCode::ProducerFenced, "epoch bumped".into())))
            .classify(KafkaError::MessageProduction(RDKafkaErrorCode::ProducerFenced));
        let Reaction::Fail(err) = r else {
            panic!("fencing must not be retried")
        };
        assert!(err.is_fenced());
        assert!(!err.is_restartable());
        let msg = err.to_string();
        assert!(
            msg.contains("another instance") && msg.contains("outboxd-slot"),
            "{msg}"
        );
    }

    #[test]
    fn other_fatal_errors_halt() {
        let r = failure(Some((
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
            "denied".into(),
        )))
        .classify(KafkaError::Canceled);
        let Reaction::Fail(err) = r else { panic!() };
        assert!(matches!(err, SinkError::Fatal { .. }));
        assert!(!err.is_restartable());
    }

    #[test]
    fn fencing_codes_without_a_fatal_state_still_halt() {
        let r = failure(None).classify(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidProducerEpoch,
        ));
        assert!(matches!(r, Reaction::Fail(SinkError::Fenced { .. })));
    }

    #[test]
    fn timeouts_retry_and_the_rest_restarts() {
        assert!(matches!(
            failure(None).classify(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)),
            Reaction::Retry(_)
        ));
        let r = failure(None).classify(KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord));
        let Reaction::Fail(err) = r else { panic!() };
        assert!(err.is_restartable());
    }
}
