//! Waiting out a schema registry that cannot answer, the same way for the pipeline and `outboxd dlq replay`:
//! the same event is asked again after a pause that doubles up to a bound, until it gets a decision, the
//! caller's interrupt (shutdown) fires, or the caller's patience runs out. Nothing is dead-lettered for an
//! unavailable registry, and nothing is skipped.

use outboxd_record::RecordError;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long to keep asking.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// The longest pause between two attempts (the first is 100 ms, then doubling).
    pub max_backoff: Duration,
    /// Give up (return the last error) after this instant; `None`: never (until interrupted).
    pub give_up_at: Option<Instant>,
}

/// The result of a patient call.
#[derive(Debug)]
pub enum Waited<T> {
    /// The call answered.
    Done(T),
    /// The interrupt fired while waiting: nothing was decided.
    Interrupted,
}

/// Runs `call` until it answers (`Ok(Done)`), fails for good (`Err`: not retriable, or patience ran out), or
/// `interrupt` resolves during a pause (`Ok(Interrupted)`).
pub async fn patiently<T, F, Fut, I>(
    patience: Patience,
    interrupt: I,
    mut call: F,
) -> Result<Waited<T>, RecordError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RecordError>>,
    I: Future<Output = ()>,
{
    let mut interrupt = std::pin::pin!(interrupt);
    let mut pause = Duration::from_millis(100).min(patience.max_backoff);
    loop {
        let e = match call().await {
            Ok(v) => return Ok(Waited::Done(v)),
            Err(e) if !e.is_retriable() => return Err(e),
            Err(e) => e,
        };
        if patience.give_up_at.is_some_and(|at| Instant::now() >= at) {
            return Err(e);
        }
        metrics::counter!(crate::metrics::REGISTRY_ERRORS).increment(1);
        tracing::warn!(error = %e, ?pause, "schema registry unavailable; retrying the same event");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = interrupt.as_mut() => return Ok(Waited::Interrupted),
        }
        pause = (pause * 2).min(patience.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outboxd_avro::AvroError;
    use std::cell::Cell;

    fn away() -> RecordError {
        RecordError::RegistryUnavailable(AvroError::Unreachable {
            url: "http://r".into(),
            what: "GET /".into(),
            detail: "refused".into(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_an_answer_with_doubling_pauses() {
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let patience = Patience {
            max_backoff: Duration::from_millis(300),
            give_up_at: None,
        };
        let out = patiently(patience, std::future::pending(), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 5 {
                    Err(away())
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert!(matches!(out, Waited::Done(5)));
        // 100 + 200 + 300 + 300 ms of pauses.
        assert_eq!(started.elapsed(), Duration::from_millis(900));
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_ends_the_wait_and_a_contract_error_at_once() {
        let patience = Patience {
            max_backoff: Duration::from_secs(5),
            give_up_at: None,
        };
        let out = patiently(
            patience,
            tokio::time::sleep(Duration::from_millis(250)),
            || async { Err::<(), _>(away()) },
        )
        .await
        .unwrap();
        assert!(matches!(out, Waited::Interrupted));
        let err = patiently(patience, std::future::pending(), || async {
            Err::<(), _>(RecordError::Config("bad".into()))
        })
        .await
        .unwrap_err();
        assert!(!err.is_retriable());
    }

    #[tokio::test]
    async fn patience_runs_out() {
        let patience = Patience {
            max_backoff: Duration::from_millis(1),
            give_up_at: Some(Instant::now()),
        };
        let err = patiently(patience, std::future::pending(), || async {
            Err::<(), _>(away())
        })
        .await
        .unwrap_err();
        assert!(err.is_retriable());
    }
}
