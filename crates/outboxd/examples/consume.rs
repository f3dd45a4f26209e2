//! A minimal exactly-once consumer of outboxd's topics, as `scripts/demo` uses it: reads topics from the
//! beginning with `isolation.level=read_committed` and prints each record's topic, partition, offset, key,
//! headers and value, decoding Confluent-framed Avro with the writer's schema fetched from the registry by id
//! (dead letters carry the original payload bytes, printed as text).
//!
//! ```text
//! cargo run -p outboxd --example consume -- --bootstrap 127.0.0.1:19092 --registry http://127.0.0.1:18081 \
//!     --topic outbox.event.order --topic outbox.dlq --expect 4
//! ```

use apache_avro::schema::{NamesRef, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::Schema;
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Consume outboxd's topics with read_committed and decode the Avro values.
#[derive(Debug, Parser)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, env = "OUTBOXD_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    bootstrap: String,
    /// Schema registry base URL.
    #[arg(long, env = "OUTBOXD_REGISTRY_URL", default_value = "http://127.0.0.1:18081")]
    registry: String,
    /// A topic to read (repeat for several).
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// Stop once this many records were read (else at the timeout, which is then not an error).
    #[arg(long)]
    expect: Option<usize>,
    /// How long to wait for records, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// Writer schemas by registry id.
struct Registry {
    url: String,
    http: reqwest::Client,
    schemas: HashMap<u32, (String, Schema)>,
}

impl Registry {
    async fn schema(&mut self, id: u32) -> Result<&(String, Schema), String> {
        if !self.schemas.contains_key(&id) {
            let url = format!("{}/schemas/ids/{id}", self.url);
            let body: Json = self
                .http
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("GET {url}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let text = body["schema"]
                .as_str()
                .ok_or_else(|| format!("GET {url}: no schema in {body}"))?;
            let schema = Schema::parse_str(text).map_err(|e| format!("schema {id}: {e}"))?;
            let name = match &schema {
                Schema::Record(r) => r.name.fullname(None),
                other => format!("{other:?}"),
            };
            self.schemas.insert(id, (name, schema));
        }
        Ok(&self.schemas[&id])
    }
}

/// An Avro value as JSON text, in the schema's field order, using the schema for what plain conversion loses:
/// decimals as exact decimal strings, timestamps as RFC 3339 (UTC), unions and enums as their plain values.
fn render(value: &Value, schema: &Schema, names: &NamesRef<'_>) -> String {
    let schema = match schema {
        Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
        s => s,
    };
    let text = |s: String| Json::String(s).to_string();
    match (value, schema) {
        (Value::Record(fields), Schema::Record(r)) => {
            let parts: Vec<String> = fields
                .iter()
                .zip(&r.fields)
                .map(|((name, v), f)| format!("{}:{}", text(name.clone()), render(v, &f.schema, names)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        (Value::Union(i, v), Schema::Union(u)) => match u.variants().get(*i as usize) {
            Some(s) => render(v, s, names),
            None => "null".into(),
        },
        (Value::Array(items), Schema::Array(a)) => {
            let parts: Vec<String> = items.iter().map(|v| render(v, &a.items, names)).collect();
            format!("[{}]", parts.join(","))
        }
        (Value::Map(m), Schema::Map(ms)) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", text(k.clone()), render(v, &ms.types, names)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        (Value::Decimal(d), Schema::Decimal(ds)) => match <Vec<u8>>::try_from(d) {
            Ok(bytes) => text(decimal_text(&bytes, ds.scale)),
            Err(e) => text(format!("<decimal: {e}>")),
        },
        (Value::TimestampMillis(ms), _) => {
            text(rfc3339(ms.div_euclid(1_000), ms.rem_euclid(1_000) * 1_000_000, 3))
        }
        (Value::TimestampMicros(us), _) => text(rfc3339(
            us.div_euclid(1_000_000),
            us.rem_euclid(1_000_000) * 1_000,
            6,
        )),
        (other, _) => {
            Json::try_from(other.clone()).map_or_else(|e| text(format!("<{e}>")), |j| j.to_string())
        }
    }
}

/// Seconds and nanoseconds since the Unix epoch as RFC 3339 in UTC, with `digits` fractional digits.
fn rfc3339(secs: i64, nanos: i64, digits: usize) -> String {
    // Days to a civil date (Howard Hinnant's algorithm).
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let frac = format!("{nanos:09}");
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        &frac[..digits]
    )
}

/// Big-endian two's complement unscaled bytes with `scale` decimals, as text (`4430`, 2 -> `44.30`).
fn decimal_text(bytes: &[u8], scale: usize) -> String {
    if bytes.len() > 16 {
        return format!("<decimal of {} bytes>", bytes.len());
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut n: i128 = if negative { -1 } else { 0 };
    for b in bytes {
        n = (n << 8) | i128::from(*b);
    }
    let digits = n.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if negative { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

async fn describe_value(registry: &mut Registry, bytes: Option<&[u8]>) -> String {
    let Some(bytes) = bytes else {
        return "(none)".into();
    };
    if bytes.len() < 5 || bytes[0] != 0 {
        return format!("not Avro (original payload): {}", String::from_utf8_lossy(bytes));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let (name, schema) = match registry.schema(id).await {
        Ok(s) => s,
        Err(e) => return format!("Avro with schema id {id}, which the registry did not give: {e}"),
    };
    #[allow(deprecated)] // a bare datum after the 5-byte Confluent header, not an Avro container
    let decoded = apache_avro::from_avro_datum(schema, &mut &bytes[5..], None);
    let names = ResolvedSchema::new(schema)
        .map(|r| r.get_names().clone())
        .unwrap_or_default();
    match decoded {
        Ok(v) => format!("Avro, schema id {id} ({name}): {}", render(&v, schema, &names)),
        Err(e) => format!("Avro with schema id {id} ({name}) that does not decode: {e}"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let consumer: StreamConsumer = match ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set(
            "group.id",
            format!("outboxd-demo-consumer-{}", std::process::id()),
        )
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("log_level", "3")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consume: cannot create a consumer for {}: {e}", args.bootstrap);
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut tpl = TopicPartitionList::new();
    for topic in &args.topics {
        // outboxd creates an event topic when the first event for it arrives: wait for it to exist.
        let partitions = loop {
            let partitions: Vec<i32> = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .map(|md| {
                    md.topics()
                        .iter()
                        .filter(|t| t.error().is_none())
                        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                        .collect()
                })
                .unwrap_or_default();
            if !partitions.is_empty() {
                break partitions;
            }
            if Instant::now() >= deadline {
                eprintln!("consume: topic {topic} does not exist on {}", args.bootstrap);
                return ExitCode::FAILURE;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for p in partitions {
            let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        eprintln!("consume: assign: {e}");
        return ExitCode::FAILURE;
    }
    let mut registry = Registry {
        url: args.registry.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        schemas: HashMap::new(),
    };
    let mut read = 0;
    while args.expect.is_none_or(|n| read < n) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let m = match tokio::time::timeout(left, consumer.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => {
                eprintln!("consume: {e}");
                continue;
            }
            Ok(Ok(m)) => m,
        };
        read += 1;
        let key = m
            .key()
            .map_or("(none)".into(), |k| String::from_utf8_lossy(k).into_owned());
        println!(
            "{} [partition {}, offset {}] key={key}",
            m.topic(),
            m.partition(),
            m.offset()
        );
        if let Some(headers) = m.headers() {
            let text: Vec<String> = headers
                .iter()
                .map(|h| {
                    format!(
                        "{}={}",
                        h.key,
                        String::from_utf8_lossy(h.value.unwrap_or_default())
                    )
                })
                .collect();
            println!("  headers: {}", text.join(", "));
        }
        println!("  value:   {}", describe_value(&mut registry, m.payload()).await);
    }
    match args.expect {
        Some(n) if read < n => {
            eprintln!(
                "consume: only {read} of {n} records within {}s (read_committed)",
                args.timeout_secs
            );
            ExitCode::FAILURE
        }
        _ => {
            println!("({read} records, read_committed)");
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{decimal_text, rfc3339};

    #[test]
    fn decimals_keep_their_scale_and_sign() {
        assert_eq!(decimal_text(&[0x11, 0x4e], 2), "44.30");
        assert_eq!(decimal_text(&[0x05], 2), "0.05");
        assert_eq!(decimal_text(&[0xff], 2), "-0.01");
        assert_eq!(decimal_text(&[0x2a], 0), "42");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_714_564_800, 123_000_000, 3), "2024-05-01T12:00:00.123Z");
        assert_eq!(rfc3339(0, 0, 6), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(-1, 999_000_000, 3), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(951_782_400, 0, 3), "2000-02-29T00:00:00.000Z");
    }
}
