//! The projection: one row per order in `order_projection`, written in the inbox transaction.

use outboxd_consumer::{Effects, Event, Handler, HandlerError};
use serde::Deserialize;

/// The table, created at start.
pub const DDL: &str = "CREATE TABLE IF NOT EXISTS order_projection (
    order_id       text PRIMARY KEY,
    status         text NOT NULL,
    customer_id    text,
    currency       text,
    channel        text,
    items          int,
    payment_method text,
    created_at     timestamptz,
    paid_at        timestamptz,
    events         int NOT NULL DEFAULT 0,
    last_event_id  text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
)";

/// The demo's two events (`config/schemas/OrderCreated.avsc`, `OrderPaid.avsc`), with the fields the
/// projection reads (serde skips the others). One topic carries both: serde tries each shape in turn.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OrderEvent {
    /// A customer placed an order.
    Created(OrderCreated),
    /// The order was paid.
    Paid(OrderPaid),
}

/// `OrderCreated`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct OrderCreated {
    /// The order (a uuid).
    #[serde(rename = "orderId")]
    pub order_id: String,
    /// Who ordered.
    pub customer: Customer,
    /// An Avro enum, read as its symbol.
    pub currency: String,
    /// WEB, MOBILE or STORE.
    pub channel: String,
    /// The lines.
    pub items: Vec<LineItem>,
    /// timestamp-millis.
    #[serde(rename = "createdAt")]
    pub created_at: i64,
}

/// `OrderPaid`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct OrderPaid {
    /// The order (a uuid).
    #[serde(rename = "orderId")]
    pub order_id: String,
    /// How it was paid.
    pub payment: Payment,
    /// timestamp-micros.
    #[serde(rename = "paidAt")]
    pub paid_at: i64,
}

/// OrderCreated's customer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Customer {
    /// Customer id.
    pub id: String,
    /// Optional e-mail.
    pub email: Option<String>,
}

/// One line of an order (only the quantity is projected).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct LineItem {
    /// Units.
    pub quantity: i32,
}

/// OrderPaid's payment.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Payment {
    /// CARD, INVOICE or WALLET.
    pub method: String,
}

/// The handler.
#[derive(Debug, Default)]
pub struct OrderProjection;

impl Handler for OrderProjection {
    type Payload = OrderEvent;

    async fn handle(&self, event: &Event<OrderEvent>, effects: Effects<'_>) -> Result<(), HandlerError> {
        let tx = effects
            .transaction()
            .ok_or_else(|| HandlerError::reject("order-projection needs the Postgres inbox store"))?;
        let id = &event.meta.event_id;
        match &event.payload {
            OrderEvent::Created(e) => {
                let items: i32 = e.items.iter().map(|l| l.quantity).sum();
                tx.execute(
                    "INSERT INTO order_projection AS o (order_id, status, customer_id, currency, channel, items, \
                       created_at, events, last_event_id)
                     VALUES ($1, 'created', $2, $3, $4, $5, to_timestamp($6::bigint / 1000.0), 1, $7)
                     ON CONFLICT (order_id) DO UPDATE SET customer_id = $2, currency = $3, channel = $4,
                       items = $5, created_at = to_timestamp($6::bigint / 1000.0), events = o.events + 1,
                       last_event_id = $7, updated_at = now()",
                    &[&e.order_id, &e.customer.id, &e.currency, &e.channel, &items, &e.created_at, id],
                )
                .await?;
            }
            OrderEvent::Paid(e) => {
                tx.execute(
                    "INSERT INTO order_projection AS o (order_id, status, payment_method, paid_at, events, \
                       last_event_id)
                     VALUES ($1, 'paid', $2, to_timestamp($3::bigint / 1000000.0), 1, $4)
                     ON CONFLICT (order_id) DO UPDATE SET status = 'paid', payment_method = $2,
                       paid_at = to_timestamp($3::bigint / 1000000.0), events = o.events + 1,
                       last_event_id = $4, updated_at = now()",
                    &[&e.order_id, &e.payment.method, &e.paid_at, id],
                )
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;
    use outboxd_avro::convert::{named_types, Converter};
    use outboxd_avro::UnknownFields;

    fn decode(schema_file: &str, json: &str) -> OrderEvent {
        let path = format!(
            "{}/../../config/schemas/{schema_file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let schema = Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let json: serde_json::Value = serde_json::from_str(json).unwrap();
        // outboxd's own JSON-to-Avro path, then the datum round trip a consumer sees.
        let names = named_types(&schema).unwrap();
        let value = Converter::new(&names, UnknownFields::Reject)
            .convert(&json, &schema)
            .unwrap();
        #[allow(deprecated)] // a bare datum, as in the Confluent frame
        let bytes = apache_avro::to_avro_datum(&schema, value).unwrap();
        let value = outboxd_avro::frame::decode_datum(&schema, &bytes).unwrap();
        apache_avro::from_value(&value).unwrap()
    }

    #[test]
    fn reads_both_demo_events() {
        let created = decode(
            "OrderCreated.avsc",
            r#"{"orderId":"67e55044-10b1-426f-9247-bb680e5fe0c8","customer":{"id":"c-1","email":null,
                "shippingAddress":null},"items":[{"sku":"B","quantity":2,"unitPrice":"19.90"}],
                "total":"39.80","currency":"EUR","channel":"WEB","createdAt":"2024-05-01T12:00:00.123Z","note":null}"#,
        );
        let OrderEvent::Created(created) = created else {
            panic!("not an OrderCreated: {created:?}")
        };
        assert_eq!(created.order_id, "67e55044-10b1-426f-9247-bb680e5fe0c8");
        assert_eq!(
            (created.currency.as_str(), created.channel.as_str()),
            ("EUR", "WEB")
        );
        assert_eq!(created.items, vec![LineItem { quantity: 2 }]);
        assert_eq!(created.created_at, 1_714_564_800_123);
        assert_eq!(
            (created.customer.id.as_str(), created.customer.email),
            ("c-1", None)
        );
        let paid = decode(
            "OrderPaid.avsc",
            r#"{"orderId":"67e55044-10b1-426f-9247-bb680e5fe0c8","payment":{"method":"CARD",
                "amount":"39.80","currency":"EUR","reference":null},"paidAt":"2024-05-01T12:01:30.123456Z",
                "attempts":[],"metadata":{}}"#,
        );
        let OrderEvent::Paid(paid) = paid else {
            panic!("not an OrderPaid: {paid:?}")
        };
        assert_eq!(paid.payment.method, "CARD");
        assert_eq!(paid.paid_at, 1_714_564_890_123_456);
    }
}
