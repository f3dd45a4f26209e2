//! The test handler: projects each `OrderCreated` into `effects` (one row per application, never deduplicated
//! by the table itself, so a duplicate effect shows), and the audits over it.

use outboxd_consumer::{Effects, Event, Handler, HandlerError};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use tokio_postgres::Client;

/// The test's payload type (the `OrderCreated` schema of [`super::World`]).
#[derive(Clone, Debug, Deserialize)]
pub struct TestOrder {
    #[serde(rename = "orderId")]
    pub order_id: String,
    pub amount: i32,
}

/// Creates the projection table.
pub async fn create(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE effects (
                seq          bigserial PRIMARY KEY,
                event_id     text NOT NULL,
                aggregate_id text NOT NULL,
                amount       int  NOT NULL,
                instance     text NOT NULL
            )",
        )
        .await
        .unwrap();
}

/// Writes one `effects` row per event: in the inbox transaction when there is one, else on its own
/// connection (the Redis store). An event with a negative amount always fails (a poison event).
#[derive(Debug)]
pub struct Projection {
    /// Used when the store gives no transaction.
    pub direct: Option<tokio::sync::Mutex<Client>>,
    /// Names the process in `effects.instance`.
    pub instance: String,
}

const INSERT: &str = "INSERT INTO effects (event_id, aggregate_id, amount, instance) VALUES ($1, $2, $3, $4)";

impl Handler for Projection {
    type Payload = TestOrder;

    async fn handle(&self, event: &Event<TestOrder>, effects: Effects<'_>) -> Result<(), HandlerError> {
        let p = &event.payload;
        if p.amount < 0 {
            return Err(HandlerError::retry(format!(
                "order {} has a negative amount",
                p.order_id
            )));
        }
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&event.meta.event_id, &p.order_id, &p.amount, &self.instance];
        match (effects.transaction(), &self.direct) {
            (Some(tx), _) => {
                tx.execute(INSERT, &params).await?;
            }
            (None, Some(client)) => {
                client.lock().await.execute(INSERT, &params).await?;
            }
            (None, None) => return Err(HandlerError::reject("no transaction and no direct connection")),
        }
        Ok(())
    }
}

/// Rows of `effects`.
pub async fn count(client: &Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM effects", &[])
        .await
        .unwrap()
        .get(0)
}

/// Distinct event ids in `effects`.
pub async fn distinct(client: &Client) -> i64 {
    client
        .query_one("SELECT count(DISTINCT event_id) FROM effects", &[])
        .await
        .unwrap()
        .get(0)
}

/// The audit of a finished run.
#[derive(Debug)]
pub struct Audit {
    /// Event ids applied more than once, with their counts.
    pub duplicates: BTreeMap<String, i64>,
    /// Expected ids never applied.
    pub missing: Vec<String>,
    /// Ids applied that were not expected.
    pub unexpected: Vec<String>,
    /// Aggregates whose effects are not in increasing amount order (the first bad pair).
    pub out_of_order: Vec<(String, i32, i32)>,
    /// Rows per instance.
    pub per_instance: BTreeMap<String, i64>,
}

/// Reads `effects` whole and checks it against the expected ids.
pub async fn audit(client: &Client, expected: &[String]) -> Audit {
    let rows = client
        .query(
            "SELECT event_id, aggregate_id, amount, instance FROM effects ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut last: BTreeMap<String, i32> = BTreeMap::new();
    let mut out_of_order = Vec::new();
    let mut per_instance: BTreeMap<String, i64> = BTreeMap::new();
    for r in &rows {
        let (id, agg, amount, instance): (String, String, i32, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        *counts.entry(id).or_default() += 1;
        *per_instance.entry(instance).or_default() += 1;
        if let Some(&prev) = last.get(&agg) {
            if amount <= prev && out_of_order.len() < 10 {
                out_of_order.push((agg.clone(), prev, amount));
            }
        }
        last.insert(agg, amount);
    }
    let expected_set: BTreeSet<&String> = expected.iter().collect();
    Audit {
        duplicates: counts
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(k, &n)| (k.clone(), n))
            .collect(),
        missing: expected
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .cloned()
            .collect(),
        unexpected: counts
            .keys()
            .filter(|id| !expected_set.contains(id))
            .cloned()
            .collect(),
        out_of_order,
        per_instance,
    }
}
