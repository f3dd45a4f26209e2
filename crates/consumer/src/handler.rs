//! The handler contract: what the application implements.

use crate::error::HandlerError;
use crate::event::Event;
use serde::de::DeserializeOwned;
use std::future::Future;
use tokio_postgres::Transaction;

/// The application's side: applies one event.
///
/// Contract:
/// - Called for the events of one partition one at a time, in offset order; for different partitions
///   concurrently (at most `max_in_flight` at once).
/// - With the Postgres inbox, do every write through [`Effects::transaction`]: the consumer inserts the event
///   id into the inbox in that same transaction and commits it after `handle` returns `Ok`, so the writes
///   happen exactly once. Do not commit or roll it back yourself. Side effects outside that transaction (an
///   e-mail, an HTTP call) may happen more than once: make them idempotent by the event id.
/// - With the Redis store there is no transaction ([`Effects::transaction`] is `None`): the event id is set in
///   Redis after `handle` returns `Ok`.
/// - `Err(HandlerError::Retry)` is retried with backoff; `Err(HandlerError::Reject)`, or retries exhausted,
///   sends the event to the dead-letter topic. Either way the transaction is rolled back.
pub trait Handler: Send + Sync + 'static {
    /// The payload type, decoded from the event's Avro value by field name (serde).
    type Payload: DeserializeOwned + Send + Sync + 'static;

    /// Applies one event.
    fn handle<'a>(
        &'a self,
        event: &'a Event<Self::Payload>,
        effects: Effects<'a>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

/// Where a handler writes its effects.
#[derive(Clone, Copy)]
pub struct Effects<'a> {
    tx: Option<&'a Transaction<'a>>,
}

impl std::fmt::Debug for Effects<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Effects")
            .field("transaction", &self.tx.is_some())
            .finish()
    }
}

impl<'a> Effects<'a> {
    pub(crate) fn inbox(tx: &'a Transaction<'a>) -> Effects<'a> {
        Effects { tx: Some(tx) }
    }

    pub(crate) fn none() -> Effects<'a> {
        Effects { tx: None }
    }

    /// The Postgres transaction that also records the event id in the inbox (`None` with the Redis store).
    pub fn transaction(&self) -> Option<&'a Transaction<'a>> {
        self.tx
    }
}
