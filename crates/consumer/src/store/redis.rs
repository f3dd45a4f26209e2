//! The Redis store: `SET <group>:<event id> <outcome> EX <ttl>` after the handler succeeded; an id found is a
//! duplicate. Weaker than the inbox, by construction: a crash between the handler's effect and the `SET`
//! applies that event again on redelivery, and an id is forgotten after the TTL.

use super::AttemptError;
use crate::error::ConsumerError;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

/// A multiplexed connection (it reconnects on the next command after a failure).
pub(crate) struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

fn store_error(what: &str, e: &redis::RedisError) -> AttemptError {
    AttemptError::Store(format!("Redis store: {what}: {e}"))
}

impl RedisStore {
    pub async fn open(url: &str, group: &str, ttl_secs: u64) -> Result<RedisStore, ConsumerError> {
        if ttl_secs == 0 {
            return Err(ConsumerError::Config("store.ttl_secs must be at least 1".into()));
        }
        let unavailable = |what: &str| {
            let what = what.to_string();
            move |source| ConsumerError::RedisUnavailable { what, source }
        };
        let client = redis::Client::open(url).map_err(|e| {
            ConsumerError::Config(format!(
                "store.url is not a Redis URL ({e}): use redis://host:port/db"
            ))
        })?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(unavailable("connect"))?;
        Ok(RedisStore {
            client,
            conn: tokio::sync::Mutex::new(Some(conn)),
            prefix: format!("outboxd-consumer:{group}:"),
            ttl_secs,
        })
    }

    /// The key of an event id (also what the tests look up).
    pub fn key(&self, event_id: &str) -> String {
        format!("{}{event_id}", self.prefix)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, AttemptError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| store_error("connect", &e))?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    pub async fn seen(&self, event_id: &str) -> Result<bool, AttemptError> {
        let mut c = self.connection().await?;
        match c.exists::<_, bool>(self.key(event_id)).await {
            Ok(b) => Ok(b),
            Err(e) => {
                self.forget_connection().await;
                Err(store_error("EXISTS", &e))
            }
        }
    }

    pub async fn record(&self, event_id: &str, outcome: &str) -> Result<(), AttemptError> {
        let mut c = self.connection().await?;
        match c
            .set_ex::<_, _, ()>(self.key(event_id), outcome, self.ttl_secs)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                self.forget_connection().await;
                Err(store_error("SET EX", &e))
            }
        }
    }
}
