//! The Postgres inbox: `(consumer_group, event_id)` inserted in the handler's own transaction. The insert
//! comes first: a redelivery finds the row and is skipped, and two deliveries of one event racing (an old
//! owner of a partition still finishing while the new owner starts) serialize on the primary key, so the
//! second waits for the first to commit or roll back and then skips or applies.

use super::{AttemptError, StoreOutcome};
use crate::error::ConsumerError;
use crate::event::Event;
use crate::handler::{Effects, Handler};
use std::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// The inbox table and a small pool of connections (at most `max_in_flight`: one per event in flight).
#[derive(Debug)]
pub(crate) struct Inbox {
    url: String,
    group: String,
    insert: String,
    exists: String,
    idle: Mutex<Vec<Client>>,
}

/// True for `name` or `schema.name` made of `[A-Za-z0-9_]`.
fn valid_table(table: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    match table.split_once('.') {
        Some((schema, name)) => part(schema) && part(name),
        None => part(table),
    }
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "inbox connection closed");
        }
    });
    Ok(client)
}

fn store_error(what: &str, e: &tokio_postgres::Error) -> AttemptError {
    AttemptError::Store(format!("Postgres inbox: {what}: {e}"))
}

impl Inbox {
    /// Connects once and creates the table when absent.
    pub async fn open(url: &str, table: &str, group: &str) -> Result<Inbox, ConsumerError> {
        if !valid_table(table) {
            return Err(ConsumerError::Config(format!(
                "store.table {table:?} is not a table name: use schema.table of [A-Za-z0-9_], e.g. public.outboxd_inbox"
            )));
        }
        let unavailable = |what: &str| {
            let what = what.to_string();
            move |source| ConsumerError::PostgresUnavailable { what, source }
        };
        let client = connect(url).await.map_err(unavailable("connect"))?;
        // Instances of a group start together: CREATE TABLE IF NOT EXISTS is not safe against a concurrent one
        // (a unique violation in pg_type), so the creation is serialized by a transaction-scoped advisory lock.
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('outboxd-consumer inbox {table}'));
                CREATE TABLE IF NOT EXISTS {table} (
                    consumer_group text        NOT NULL,
                    event_id       text        NOT NULL,
                    topic          text        NOT NULL,
                    kafka_partition int        NOT NULL,
                    kafka_offset   bigint      NOT NULL,
                    outcome        text        NOT NULL,
                    handled_at     timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (consumer_group, event_id)
                ); COMMIT"
            ))
            .await
            .map_err(unavailable(&format!("CREATE TABLE IF NOT EXISTS {table}")))?;
        Ok(Inbox {
            url: url.to_string(),
            group: group.to_string(),
            insert: format!(
                "INSERT INTO {table} (consumer_group, event_id, topic, kafka_partition, kafka_offset, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
            ),
            exists: format!("SELECT 1 FROM {table} WHERE consumer_group = $1 AND event_id = $2"),
            idle: Mutex::new(vec![client]),
        })
    }

    async fn take(&self) -> Result<Client, AttemptError> {
        let idle = self.idle.lock().expect("inbox pool lock").pop();
        match idle {
            Some(c) if !c.is_closed() => Ok(c),
            _ => connect(&self.url).await.map_err(|e| store_error("connect", &e)),
        }
    }

    fn put(&self, client: Client) {
        if !client.is_closed() {
            self.idle.lock().expect("inbox pool lock").push(client);
        }
    }

    pub async fn apply<H: Handler>(
        &self,
        handler: &H,
        event: &Event<H::Payload>,
    ) -> Result<StoreOutcome, AttemptError> {
        let mut client = self.take().await?;
        let result = self.apply_on(&mut client, handler, event).await;
        self.put(client);
        result
    }

    async fn apply_on<H: Handler>(
        &self,
        client: &mut Client,
        handler: &H,
        event: &Event<H::Payload>,
    ) -> Result<StoreOutcome, AttemptError> {
        let m = &event.meta;
        let tx = client.transaction().await.map_err(|e| store_error("BEGIN", &e))?;
        let inserted = tx
            .execute(
                &self.insert,
                &[
                    &self.group,
                    &m.event_id,
                    &m.topic,
                    &m.partition,
                    &m.offset,
                    &"applied",
                ],
            )
            .await
            .map_err(|e| store_error("INSERT into the inbox", &e))?;
        if inserted == 0 {
            // Dropping the transaction rolls it back.
            return Ok(StoreOutcome::Duplicate);
        }
        handler
            .handle(event, Effects::inbox(&tx))
            .await
            .map_err(AttemptError::Handler)?;
        match tx.commit().await {
            Ok(()) => Ok(StoreOutcome::Applied),
            // A lost connection: whether the commit happened is unknown; the retry's inbox insert decides.
            Err(e) if client.is_closed() => Err(store_error("COMMIT", &e)),
            // The server refused the commit (a deferred constraint, a serialization failure): the handler's
            // writes are at fault, retried as a handler failure.
            Err(e) => Err(AttemptError::Handler(e.into())),
        }
    }

    pub async fn seen(&self, event_id: &str) -> Result<bool, AttemptError> {
        let client = self.take().await?;
        let r = client.query_opt(&self.exists, &[&self.group, &event_id]).await;
        self.put(client);
        r.map(|row| row.is_some())
            .map_err(|e| store_error("SELECT from the inbox", &e))
    }

    pub async fn record(
        &self,
        event_id: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        outcome: &str,
    ) -> Result<(), AttemptError> {
        let client = self.take().await?;
        let r = client
            .execute(
                &self.insert,
                &[&self.group, &event_id, &topic, &partition, &offset, &outcome],
            )
            .await;
        self.put(client);
        r.map(|_| ())
            .map_err(|e| store_error("INSERT into the inbox", &e))
    }
}
