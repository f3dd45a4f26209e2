//! The hot path of outboxd on a fixed input, with no I/O: pgoutput message bytes to the record the producer
//! would send. Made to be counted under `valgrind --tool=callgrind` (`scripts/bench --instructions`, issue 16;
//! method and figures in docs/benchmarks.md, "Instructions per event (callgrind)").
//!
//! The input is built in memory before the measured part, deterministically: the XLogData payloads a
//! pgoutput walsender sends for `--transactions` transactions of `--rows-per-tx` rows of `public.outbox`
//! (config/outbox.sql) as the throughput benchmark writes them (`aggregate_type` `order`, `aggregate_id`
//! `o-<i>`, event type `OrderCreated`, the same ~330-byte nested payload in jsonb's text form): one Relation
//! message at the start (Postgres sends it once per session), then Begin, Insert x k, Commit per transaction.
//!
//! The measured part is [`run_hot_path`]: for each message, `pgoutput::decode`, the [`Assembler`] (with the
//! default column mapping: the outbox row to an [`OutboxEvent`]), then for each event [`Stage::prepare`]
//! with the benchmark's configuration (fixed topic, default key format, unknown fields rejected) to a ready
//! record, and the librdkafka record the sink would send ([`outboxd_kafka::producer_record`], built, never
//! sent). The encoder is [`BenchEncoder`]: what `outboxd_avro::Encoder` does in the steady state
//! ([`encode_payload`] with config/schemas/OrderCreated.avsc under a fixed schema id, the key as its key format
//! says) minus the id-cache lookup. `prepare` is polled once with a no-op waker (its futures are ready at
//! once): no runtime is counted. A checksum of every record's bytes is printed (in [`checksum`], which the
//! script leaves out of the count with a second `--toggle-collect`).

use clap::Parser;
use outboxd_avro::frame::{encode_payload, frame_string};
use outboxd_avro::{reason, AvroConfig, EncodeError, EncodedPayload, KeyFormat, LoadedSchema, UnknownFields};
use outboxd_core::{Lsn, OutboxEvent, TxEvent};
use outboxd_kafka::{rfc3339_micros, ReadyRecord, RouteMode, SinkConfig};
use outboxd_record::{PayloadEncoder, Prepared, Stage};
use outboxd_wal::pgoutput;
use outboxd_wal::{Assembler, AssemblerConfig, ColumnMapping, Input, OutboxMode};
use std::future::{ready, Future};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// The schema the throughput benchmark gives outboxd for its rows.
const SCHEMA: &str = include_str!("../../../../config/schemas/OrderCreated.avsc");
const EVENT_TYPE: &str = "OrderCreated";
const TOPIC: &str = "hotpath.events";
/// The schema id and subject version the registry would have given it.
const SCHEMA_ID: u32 = 1;
const SCHEMA_VERSION: i32 = 1;
/// The key schema id (used only with `key_format = "avro"`).
const KEY_SCHEMA_ID: u32 = 2;
/// The outbox table's OID in the Relation and Insert messages.
const RELATION_ID: u32 = 16_385;
/// 2024-05-01T12:34:56Z, the first commit; then one transaction per millisecond.
const FIRST_COMMIT_UNIX_US: i64 = 1_714_566_896_000_000;
/// Microseconds between the Unix and the Postgres (2000-01-01) epochs.
const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

/// Counts the hot path of outboxd (pgoutput bytes to a ready record) on a fixed input.
#[derive(Debug, Parser)]
#[command(name = "hotpath")]
struct Args {
    /// Transactions in the input.
    #[arg(long, default_value_t = 1_000)]
    transactions: u64,
    /// Outbox rows per transaction.
    #[arg(long, default_value_t = 1)]
    rows_per_tx: u64,
}

/// The replication stream: each XLogData's payload (one pgoutput message) with its `wal_start`.
#[derive(Debug, Default)]
struct Stream {
    data: Vec<u8>,
    /// (end offset in `data`, wal_start) per message, in order.
    messages: Vec<(usize, Lsn)>,
}

impl Stream {
    fn push(&mut self, at: Lsn, message: &[u8]) {
        self.data.extend_from_slice(message);
        self.messages.push((self.data.len(), at));
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], Lsn)> {
        let starts = std::iter::once(0).chain(self.messages.iter().map(|&(end, _)| end));
        starts
            .zip(&self.messages)
            .map(|(start, &(end, at))| (&self.data[start..end], at))
    }
}

/// pgoutput's big-endian fields.
#[derive(Debug, Default)]
struct Message(Vec<u8>);

impl Message {
    fn tag(t: u8) -> Message {
        Message(vec![t])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn cstr(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }
    fn text(self, s: &str) -> Self {
        let mut m = self.u8(b't').i32(s.len() as i32);
        m.0.extend_from_slice(s.as_bytes());
        m
    }
}

/// The outbox table's columns (config/outbox.sql) as pgoutput describes them: name, type OID, replica key.
const COLUMNS: [(&str, u32, bool); 10] = [
    ("id", 2950, true),
    ("aggregate_type", 25, false),
    ("aggregate_id", 25, false),
    ("event_type", 25, false),
    ("payload", 3802, false),
    ("headers", 3802, false),
    ("traceparent", 25, false),
    ("tracestate", 25, false),
    ("schema_version", 23, false),
    ("created_at", 1184, false),
];

fn relation() -> Vec<u8> {
    let mut m = Message::tag(b'R')
        .i32(RELATION_ID as i32)
        .cstr("public")
        .cstr("outbox")
        .u8(b'd')
        .i16(COLUMNS.len() as i16);
    for (name, oid, key) in COLUMNS {
        m = m.u8(u8::from(key)).cstr(name).i32(oid as i32).i32(-1);
    }
    m.0
}

/// A fixed pseudo-random 64-bit value per input (splitmix64).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A version-4 UUID as `gen_random_uuid()` prints it, fixed per `(i, salt)`.
fn uuid(i: u64, salt: u64) -> String {
    let (a, b) = (mix(i ^ (salt << 40)), mix(!i ^ (salt << 40)));
    let hex = format!("{a:016x}{b:016x}");
    let v4 = format!("{}4{}8{}", &hex[..12], &hex[13..16], &hex[17..]);
    format!(
        "{}-{}-{}-{}-{}",
        &v4[..8],
        &v4[8..12],
        &v4[12..16],
        &v4[16..20],
        &v4[20..]
    )
}

/// Row `i`'s insert, its values as the throughput benchmark's `bench_payload(i)` writes them, in the text
/// form pgoutput sends (jsonb prints object keys shortest first, then bytewise, with `": "` and `", "`).
fn insert(i: u64, created_us: i64) -> Vec<u8> {
    let micros = rfc3339_micros(created_us);
    let millis = format!("{}Z", &micros[..23]);
    let payload = format!(
        r#"{{"items": [{{"sku": "BOOK-{}", "quantity": 2, "unitPrice": "19.90"}}], "total": "39.80", "orderId": "{}", "currency": "EUR", "customer": {{"id": "c-{i}", "shippingAddress": {{"city": "Oslo", "street": "Storgata {}", "country": "NO", "postalCode": "0155"}}}}, "createdAt": "{millis}"}}"#,
        i % 97,
        uuid(i, 1),
        i % 200,
    );
    let created_at = format!("{}+00", micros.replace('T', " ").trim_end_matches('Z'));
    let row = Message::tag(b'I').i32(RELATION_ID as i32).u8(b'N').i16(10);
    let row = row.text(&uuid(i, 2)).text("order").text(&format!("o-{i}"));
    let row = row.text(EVENT_TYPE).text(&payload);
    let row = (0..4).fold(row, |m, _| m.u8(b'n'));
    row.text(&created_at).0
}

/// The whole input: a Relation, then `transactions` transactions of `rows` inserts, with plausible LSNs.
fn build_stream(transactions: u64, rows: u64) -> Stream {
    let mut stream = Stream::default();
    let mut lsn = 0x1_6B37_4D48_u64;
    stream.push(Lsn(lsn), &relation());
    for tx in 0..transactions {
        let commit_unix_us = FIRST_COMMIT_UNIX_US + tx as i64 * 1_000;
        let commit_pg_us = commit_unix_us - PG_EPOCH_UNIX_US;
        // Each insert record takes about 520 bytes of WAL; the commit record follows the last.
        let first_insert = lsn + 0x28;
        let commit_lsn = first_insert + rows * 0x208;
        let end_lsn = commit_lsn + 0x30;
        let begin = Message::tag(b'B').u64(commit_lsn).u64(commit_pg_us as u64);
        stream.push(Lsn(0), &begin.i32(0x1000 + tx as i32).0);
        for r in 0..rows {
            let i = tx * rows + r + 1;
            stream.push(Lsn(first_insert + r * 0x208), &insert(i, commit_unix_us - 150));
        }
        let commit = Message::tag(b'C').u8(0).u64(commit_lsn).u64(end_lsn);
        stream.push(Lsn(end_lsn), &commit.u64(commit_pg_us as u64).0);
        lsn = end_lsn;
    }
    stream
}

/// What `outboxd_avro::Encoder` does per event in the steady state, minus finding the cached binding.
#[derive(Debug)]
struct BenchEncoder {
    schema: LoadedSchema,
    subject: std::sync::Arc<str>,
    config: AvroConfig,
}

impl BenchEncoder {
    fn new() -> BenchEncoder {
        let schema = LoadedSchema::parse(SCHEMA, "config/schemas/OrderCreated.avsc")
            .unwrap_or_else(|e| panic!("OrderCreated.avsc: {e}"));
        let subject = schema.fullname.clone().unwrap_or_else(|| EVENT_TYPE.into());
        BenchEncoder {
            schema,
            subject: subject.into(),
            // As the benchmark configures outboxd: defaults (unknown fields rejected, string keys).
            config: AvroConfig::default(),
        }
    }

    fn value(&self, event_type: &str, payload: &[u8]) -> Result<EncodedPayload, EncodeError> {
        if event_type != EVENT_TYPE {
            let detail = format!("no schema for event type {event_type:?}");
            return Err(EncodeError::rejected(reason::UNKNOWN_EVENT_TYPE, detail));
        }
        let unknown: UnknownFields = self.config.unknown_fields;
        let bytes =
            encode_payload(&self.schema, SCHEMA_ID, payload, unknown).map_err(EncodeError::Rejected)?;
        Ok(EncodedPayload {
            bytes,
            schema_id: SCHEMA_ID,
            subject: self.subject.clone(),
            version: Some(SCHEMA_VERSION),
        })
    }

    fn key(&self, aggregate_id: &str) -> Vec<u8> {
        match self.config.key_format {
            KeyFormat::String => aggregate_id.as_bytes().to_vec(),
            KeyFormat::Avro => frame_string(KEY_SCHEMA_ID, aggregate_id),
        }
    }
}

impl PayloadEncoder for BenchEncoder {
    fn encode(
        &self,
        _topic: &str,
        event_type: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<EncodedPayload, EncodeError>> + Send {
        ready(self.value(event_type, payload))
    }

    fn encode_key(
        &self,
        _topic: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Vec<u8>, EncodeError>> + Send {
        ready(Ok(self.key(aggregate_id)))
    }
}

/// The stage as the benchmark configures outboxd: one fixed topic, everything else default.
fn stage() -> Stage<BenchEncoder> {
    let mut kafka = SinkConfig::default();
    kafka.routing.mode = RouteMode::Fixed;
    kafka.routing.fixed_topic = Some(TOPIC.into());
    kafka.dlq_topic = "hotpath.dlq".into();
    Stage::new(&kafka, BenchEncoder::new()).unwrap_or_else(|e| panic!("stage: {e}"))
}

fn assembler() -> Assembler {
    Assembler::new(AssemblerConfig {
        table: ("public".into(), "outbox".into()),
        columns: ColumnMapping::default(),
        mode: OutboxMode::Table,
        skip_through: Lsn::ZERO,
        start: Lsn::ZERO,
    })
}

/// Polls a future that is ready at once (the stage's, with [`BenchEncoder`]).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the stage waited: its encoder futures are ready at once"),
    }
}

/// What went through.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    transactions: u64,
    events: u64,
    checksum: u64,
}

/// The measured part: every message of `stream` through decoding, assembly, the stage, the producer's record.
#[inline(never)]
fn run_hot_path(stream: &Stream, assembler: &mut Assembler, stage: &Stage<BenchEncoder>) -> Tally {
    let mut tally = Tally::default();
    let mut out = Vec::with_capacity(2);
    let mut commit_time_us = 0;
    for (bytes, at) in stream.iter() {
        let message = pgoutput::decode(bytes).unwrap_or_else(|e| panic!("decode: {e}"));
        assembler
            .handle(Input::Change(message, at), &mut out)
            .unwrap_or_else(|e| panic!("assembler: {e}"));
        for item in out.drain(..) {
            match item {
                TxEvent::Begin(begin) => commit_time_us = begin.commit_time_us,
                TxEvent::Event(event) => {
                    let record = ready_record(stage, &event, commit_time_us);
                    let sent = outboxd_kafka::producer_record(&record);
                    tally.checksum = checksum(tally.checksum, &record);
                    black_box(sent);
                    tally.events += 1;
                }
                TxEvent::Commit(_) => tally.transactions += 1,
            }
        }
    }
    tally
}

fn ready_record(stage: &Stage<BenchEncoder>, event: &OutboxEvent, commit_time_us: i64) -> ReadyRecord {
    match now(stage.prepare(event, commit_time_us)) {
        Ok(Prepared::Ready(record)) => record,
        other => panic!("event {:?} did not become a ready record: {other:?}", event.id),
    }
}

/// Folds the record's bytes (topic, key, value, headers) into `h`, 8 bytes at a time.
#[inline(never)]
fn checksum(mut h: u64, record: &ReadyRecord) -> u64 {
    let mut fold = |bytes: &[u8]| {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = h.rotate_left(5) ^ bytes.len() as u64;
    };
    fold(record.topic.as_bytes());
    fold(record.key.as_deref().unwrap_or_default());
    fold(record.value.as_deref().unwrap_or_default());
    for (k, v) in &record.headers {
        fold(k.as_bytes());
        fold(v);
    }
    h
}

fn main() {
    let args = Args::parse();
    let stream = black_box(build_stream(args.transactions, args.rows_per_tx));
    let (mut assembler, stage) = (assembler(), stage());
    let tally = run_hot_path(&stream, &mut assembler, &stage);
    let expected = args.transactions * args.rows_per_tx;
    assert_eq!(tally.events, expected, "events out of the hot path");
    assert_eq!(tally.transactions, args.transactions, "transactions");
    println!(
        "events: {} transactions: {} messages: {} input bytes: {} checksum: {:016x}",
        tally.events,
        tally.transactions,
        stream.messages.len(),
        stream.data.len(),
        tally.checksum
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use outboxd_avro::frame::{decode_datum, unframe};
    use outboxd_wal::pgoutput::PgOutput;

    #[test]
    fn the_input_becomes_exactly_n_times_k_ready_records() {
        let stream = build_stream(3, 4);
        assert_eq!(stream.messages.len(), 1 + 3 * (4 + 2));
        let tally = run_hot_path(&stream, &mut assembler(), &stage());
        assert_eq!((tally.transactions, tally.events), (3, 12));
        assert_eq!(
            tally,
            run_hot_path(&stream, &mut assembler(), &stage()),
            "deterministic"
        );
    }

    #[test]
    fn a_record_carries_the_row() {
        let stream = build_stream(1, 1);
        let mut out = Vec::new();
        let mut assembler = assembler();
        for (bytes, at) in stream.iter() {
            let message = pgoutput::decode(bytes).unwrap();
            if let PgOutput::Insert(insert) = &message {
                assert_eq!(insert.new.columns.len(), COLUMNS.len());
            }
            assembler.handle(Input::Change(message, at), &mut out).unwrap();
        }
        let Some(TxEvent::Event(event)) = out.get(1) else {
            panic!("{out:?}")
        };
        assert_eq!(event.aggregate_id.as_deref(), Some("o-1"));
        let record = ready_record(&stage(), event, FIRST_COMMIT_UNIX_US);
        assert_eq!(
            (&*record.topic, record.key.as_deref()),
            (TOPIC, Some(&b"o-1"[..]))
        );
        let (id, datum) = unframe(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(id, SCHEMA_ID);
        let value = decode_datum(&BenchEncoder::new().schema.schema, datum).unwrap();
        assert!(format!("{value:?}").contains("Storgata 1"), "{value:?}");
        let names: Vec<&str> = record.headers.iter().map(|(k, _)| &**k).collect();
        assert_eq!(
            names,
            [
                "id",
                "event_type",
                "aggregate_type",
                "outbox_lsn",
                "commit_time",
                "schema_id",
                "schema_version"
            ]
        );
    }
}
