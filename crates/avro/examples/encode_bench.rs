//! Steady-state encode rate on one core: a ~300-byte nested `OrderCreated` payload, JSON -> Avro -> Confluent
//! frame, exactly what `Encoder::encode` does once the schema id is cached (no registry involved).
//!
//! `encode` is the hot path (one pass, `frame::encode_payload`); the lines above it time the stages of the
//! reference tree path (`frame::encode_payload_tree`: JSON tree, Avro value tree, apache_avro's writer),
//! which is also timed whole. Nanoseconds per payload are 1e9 / the rate.
//!
//! `cargo run --release -p outboxd-avro --example encode_bench [seconds]`

use outboxd_avro::frame::{encode_payload, encode_payload_tree, frame_loaded, payload_to_value};
use outboxd_avro::{LoadedSchema, UnknownFields};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SCHEMA: &str = include_str!("../../../config/schemas/OrderCreated.avsc");
const PAYLOAD: &str = r#"{"orderId":"67e55044-10b1-426f-9247-bb680e5fe0c8","customer":{"id":"c-1042","email":null,"shippingAddress":{"street":"Storgata 1","city":"Oslo","postalCode":"0155","country":"NO"}},"items":[{"sku":"BOOK-17","quantity":2,"unitPrice":"19.90"}],"total":"39.80","currency":"EUR","createdAt":"2024-05-01T12:00:00.123Z"}"#;

/// Runs `f` for about `secs` seconds on this thread; returns calls per second.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    for _ in 0..10_000 {
        f();
    }
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..1_000 {
            f();
        }
        n += 1_000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let schema = LoadedSchema::parse(SCHEMA, "OrderCreated.avsc").expect("demo schema parses");
    let payload = PAYLOAD.as_bytes();
    let framed = encode_payload(&schema, 1, payload, UnknownFields::Reject).expect("payload fits");
    let reference = encode_payload_tree(&schema, 1, payload, UnknownFields::Reject).expect("payload fits");
    assert_eq!(framed, reference, "the one-pass encoder and the tree path agree");
    println!(
        "payload {} bytes JSON -> {} bytes framed Avro",
        payload.len(),
        framed.len()
    );

    let parse = rate(secs, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(payload)).unwrap());
    });
    let convert = rate(secs, || {
        black_box(payload_to_value(&schema, black_box(payload), UnknownFields::Reject).unwrap());
    });
    let value = payload_to_value(&schema, payload, UnknownFields::Reject).unwrap();
    let write = rate(secs, || {
        black_box(frame_loaded(1, &schema, black_box(&value), 256).unwrap());
    });
    let tree = rate(secs, || {
        black_box(encode_payload_tree(&schema, 1, black_box(payload), UnknownFields::Reject).unwrap());
    });
    let full = rate(secs, || {
        black_box(encode_payload(&schema, 1, black_box(payload), UnknownFields::Reject).unwrap());
    });
    println!("json parse only:          {parse:>10.0} /s");
    println!("json -> avro value:       {convert:>10.0} /s");
    println!("value -> framed binary:   {write:>10.0} /s");
    println!(
        "tree path, whole:         {tree:>10.0} /s  ({:.0} ns each)",
        1e9 / tree
    );
    println!(
        "encode (steady state):    {full:>10.0} events/s on one core  ({:.0} ns each)",
        1e9 / full
    );
}
