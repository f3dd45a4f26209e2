//! One fresh database per run: the outbox table, a publication, slots, fast server-side pre-writing of the
//! outbox rows, and the clean-up of its slots (a leftover slot retains WAL without bound).

use crate::env::{Services, PREFIX};
use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

/// The project's outbox table, exactly as users create it.
const OUTBOX_SQL: &str = include_str!("../../../config/outbox.sql");

/// The publication every reader (pg_recvlogical and outboxd) uses.
pub const PUBLICATION: &str = "bench_pub";

/// The payload of row `i`: an `OrderCreated` (config/schemas/OrderCreated.avsc) of about 300 bytes of JSON,
/// nested (customer, shipping address, line items), varying per row. `bench_prewrite` writes rows
/// `first..=last` (keys `o-<i>`) in transactions of `per_tx` rows, committing inside the procedure.
const SETUP_SQL: &str = r#"
CREATE FUNCTION bench_payload(i bigint) RETURNS jsonb LANGUAGE sql VOLATILE AS $f$
  SELECT ('{"orderId":"' || gen_random_uuid() || '","customer":{"id":"c-' || i
    || '","shippingAddress":{"street":"Storgata ' || (i % 200) || '","city":"Oslo","postalCode":"0155",'
    || '"country":"NO"}},"items":[{"sku":"BOOK-' || (i % 97) || '","quantity":2,"unitPrice":"19.90"}],'
    || '"total":"39.80","currency":"EUR","createdAt":"'
    || to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"}')::jsonb
$f$;
CREATE PROCEDURE bench_prewrite(first bigint, last bigint, per_tx bigint) LANGUAGE plpgsql AS $p$
DECLARE lo bigint := first;
BEGIN
  WHILE lo <= last LOOP
    INSERT INTO public.outbox (aggregate_type, aggregate_id, event_type, payload)
    SELECT 'order', 'o-' || i, 'OrderCreated', bench_payload(i)
    FROM generate_series(lo, least(lo + per_tx - 1, last)) AS i;
    COMMIT;
    lo := lo + per_tx;
  END LOOP;
END $p$;
CREATE TABLE bench_flush (at timestamptz NOT NULL DEFAULT now());
CREATE PUBLICATION bench_pub FOR TABLE public.outbox WITH (publish = 'insert');
"#;

/// The statement of the steady-rate writers: rows `$1..=$2` in one transaction.
pub const INSERT_RANGE_SQL: &str = "INSERT INTO public.outbox (aggregate_type, aggregate_id, event_type, payload) \
     SELECT 'order', 'o-' || i, 'OrderCreated', bench_payload(i) FROM generate_series($1::bigint, $2::bigint) AS i";

/// Connects and drives the connection on the runtime.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}: is Postgres up (scripts/services up postgres)?"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A database made for one run, with the outbox table and the publication.
#[derive(Debug)]
pub struct BenchDb {
    /// Database name (also the prefix of its slots).
    pub name: String,
    /// Its URL.
    pub url: String,
    admin: Client,
    client: Client,
}

impl BenchDb {
    /// Creates the database, the outbox table, the helper functions and the publication.
    pub async fn create(services: &Services, name: &str) -> Result<BenchDb> {
        let admin = connect(&services.pg_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("CREATE DATABASE")?;
        let url = services.pg_url_for(name)?;
        let client = connect(&url).await?;
        client
            .batch_execute(OUTBOX_SQL)
            .await
            .context("creating the outbox table (config/outbox.sql)")?;
        client
            .batch_execute(SETUP_SQL)
            .await
            .context("creating the bench functions and publication")?;
        Ok(BenchDb {
            name: name.to_string(),
            url,
            admin,
            client,
        })
    }

    /// Creates a pgoutput slot; returns its consistent point.
    pub async fn create_slot(&self, slot: &str) -> Result<String> {
        let row = self
            .client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )
            .await
            .with_context(|| format!("creating slot {slot}"))?;
        Ok(row.get(0))
    }

    /// Writes rows `1..=rows` in transactions of `per_tx` rows, split over `sessions` parallel sessions
    /// (asynchronous commit: pre-writing is not measured, and the WAL holds the same records either way).
    pub async fn prewrite(&self, rows: u64, per_tx: u64, sessions: u64) -> Result<Duration> {
        let started = Instant::now();
        let sessions = if per_tx.saturating_mul(2) > rows {
            1
        } else {
            sessions.max(1)
        };
        // Split on transaction boundaries so every transaction has exactly per_tx rows (but the last).
        let txs = rows.div_ceil(per_tx);
        let mut tasks = Vec::new();
        for s in 0..sessions {
            let first_tx = txs * s / sessions;
            let last_tx = txs * (s + 1) / sessions;
            let first = first_tx * per_tx + 1;
            let last = (last_tx * per_tx).min(rows);
            if first > last {
                continue;
            }
            let url = self.url.clone();
            tasks.push(tokio::spawn(async move {
                let c = connect(&url).await?;
                c.batch_execute("SET synchronous_commit = off").await?;
                c.batch_execute(&format!("CALL bench_prewrite({first}, {last}, {per_tx})"))
                    .await
                    .context("CALL bench_prewrite")?;
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await.context("pre-writing task")??;
        }
        Ok(started.elapsed())
    }

    /// Makes every earlier commit durable (a synchronous commit flushes the WAL before it) and returns the
    /// flushed position: the `--endpos` of the ceiling, past the last outbox commit.
    pub async fn flush_lsn(&self) -> Result<String> {
        self.client
            .batch_execute("SET synchronous_commit = on; INSERT INTO bench_flush DEFAULT VALUES")
            .await?;
        let row = self
            .client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await?;
        Ok(row.get(0))
    }

    /// The pid of the walsender streaming `slot`, if one is.
    pub async fn slot_pid(&self, slot: &str) -> Result<Option<u32>> {
        let row = self
            .client
            .query_opt(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        Ok(row.and_then(|r| r.get::<_, Option<i32>>(0)).map(|p| p as u32))
    }

    /// Each row's Postgres commit time in microseconds since the epoch, by event index (`o-<i>`), for the
    /// rows of index `from` and above: `pg_xact_commit_timestamp(xmin)`, the timestamp of the commit record
    /// that pgoutput's Commit message (outboxd's `commit_time` header) carries too. Needs
    /// `track_commit_timestamp = on` (scripts/services sets it).
    pub async fn commit_times_us(&self, from: u64) -> Result<std::collections::HashMap<u64, i64>> {
        let rows = self
            .client
            .query(
                "SELECT substr(aggregate_id, 3)::bigint, \
                        (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000)::bigint \
                 FROM public.outbox WHERE aggregate_id LIKE 'o-%' AND substr(aggregate_id, 3)::bigint >= $1",
                &[&(from as i64)],
            )
            .await
            .context(
                "reading commit timestamps (is track_commit_timestamp on? scripts/services up postgres)",
            )?;
        rows.iter()
            .map(|r| {
                let ts: Option<i64> = r.get(1);
                let ts = ts.context("a row without a commit timestamp: track_commit_timestamp was off")?;
                Ok((r.get::<_, i64>(0) as u64, ts))
            })
            .collect()
    }

    /// WAL bytes between two positions.
    pub async fn wal_bytes(&self, from: &str, to: &str) -> Result<u64> {
        let row = self
            .client
            .query_one(
                "SELECT pg_wal_lsn_diff($2::text::pg_lsn, $1::text::pg_lsn)::bigint",
                &[&from, &to],
            )
            .await?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Rows in the outbox and the bytes of their payloads as text (what pgoutput sends, and outboxd encodes).
    pub async fn payload_stats(&self) -> Result<(u64, u64)> {
        let row = self
            .client
            .query_one(
                "SELECT count(*), coalesce(sum(octet_length(payload::text)), 0)::bigint FROM outbox",
                &[],
            )
            .await?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    /// Drops the database and every slot on it, ending the walsenders still streaming them.
    pub async fn drop_all(self) -> Result<()> {
        drop(self.client);
        drop_database(&self.admin, &self.name).await
    }
}

/// Drops `name` and its slots.
async fn drop_database(admin: &Client, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE database = $1 AND active_pid IS NOT NULL",
                &[&name],
            )
            .await?;
        let dropped = admin
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = $1 AND NOT active",
                &[&name],
            )
            .await
            .err();
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE database = $1",
                &[&name],
            )
            .await?
            .get(0);
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{left} slot(s) of database {name} could not be dropped ({dropped:?}); drop them by hand");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Drops databases (and their slots) left by an earlier bench that did not finish; returns how many.
pub async fn drop_leftovers(services: &Services) -> Result<usize> {
    let admin = connect(&services.pg_url).await?;
    let rows = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
            &[&format!("{PREFIX}_%")],
        )
        .await?;
    for row in &rows {
        drop_database(&admin, row.get(0)).await?;
    }
    Ok(rows.len())
}
