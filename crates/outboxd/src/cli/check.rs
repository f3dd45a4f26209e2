//! `outboxd check`: the pre-flight. Runs every check it can (Postgres, Kafka, schema registry and the schema
//! gate), prints one line each with a fix for what fails, changes nothing, and exits 3 when anything failed.

use super::config_file::redact_url;
use super::exit::Exit;
use outboxd::PipelineConfig;
use outboxd_wal::admin::{self, Check, CheckStatus};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

/// Runs every check and prints them.
pub async fn check(config: &PipelineConfig) -> Exit {
    let mut checks = admin::preflight(&config.source_config()).await;
    checks.extend(kafka_checks(config).await);
    checks.push(registry_check(config).await);
    for c in &checks {
        println!("{c}");
    }
    let failed = checks.iter().filter(|c| c.status == CheckStatus::Fail).count();
    let warned = checks.iter().filter(|c| c.status == CheckStatus::Warn).count();
    if failed == 0 {
        println!("check: passed ({} checks, {warned} warning(s))", checks.len());
        Exit::ok()
    } else {
        Exit::check_failed(format!(
            "{failed} check(s) failed, {warned} warning(s): fix the [FAIL] lines above"
        ))
    }
}

fn item(name: &'static str, status: CheckStatus, detail: String, fix: Option<String>) -> Check {
    Check {
        name,
        status,
        detail,
        fix,
    }
}

async fn kafka_checks(config: &PipelineConfig) -> Vec<Check> {
    let kafka = &config.kafka;
    let servers = kafka.bootstrap_servers.clone();
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &servers).set("log_level", "3");
    for (k, v) in &kafka.librdkafka {
        client.set(k, v);
    }
    let timeout = Duration::from_millis(kafka.request_timeout_ms.clamp(1_000, 15_000));
    let admin: AdminClient<DefaultClientContext> = match client.create() {
        Ok(a) => a,
        Err(e) => {
            return vec![item(
                "kafka",
                CheckStatus::Fail,
                format!("cannot create a Kafka client: {e}"),
                Some("check kafka.librdkafka settings".into()),
            )]
        }
    };
    // Metadata is a blocking call in librdkafka: ask from a blocking thread, with a client of its own.
    let metadata = {
        let client = client.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = client.create()?;
            consumer.fetch_metadata(None, timeout).map(|m| {
                let brokers: Vec<i32> = m.brokers().iter().map(|b| b.id()).collect();
                let topics: Vec<String> = m.topics().iter().map(|t| t.name().to_string()).collect();
                (brokers, topics)
            })
        })
        .await
    };
    let (brokers, topics) = match metadata {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            return vec![item(
                "kafka",
                CheckStatus::Fail,
                format!("no answer from the brokers at {servers} within {timeout:?}: {e}"),
                Some(format!(
                    "is Kafka running and reachable at {servers}? (kafka.bootstrap_servers; TLS/SASL in kafka.librdkafka)"
                )),
            )]
        }
        Err(e) => return vec![item("kafka", CheckStatus::Fail, format!("metadata task failed: {e}"), None)],
    };
    let mut out = vec![item(
        "kafka",
        CheckStatus::Ok,
        format!("{} broker(s) answer at {servers}", brokers.len()),
        None,
    )];
    out.push(transaction_timeout_check(&admin, brokers.first().copied(), kafka.transaction_timeout_ms).await);
    let known = |t: &str| topics.iter().any(|x| x == t);
    let missing: Vec<&str> = [kafka.checkpoint_topic.as_str(), kafka.dlq_topic.as_str()]
        .into_iter()
        .filter(|t| !known(t))
        .collect();
    out.push(if missing.is_empty() {
        item("kafka topics", CheckStatus::Ok, "checkpoint and dead-letter topics exist".into(), None)
    } else if kafka.topics.create {
        item(
            "kafka topics",
            CheckStatus::Ok,
            format!("{} will be created at start (kafka.topics.create = true)", missing.join(", ")),
            None,
        )
    } else {
        item(
            "kafka topics",
            CheckStatus::Fail,
            format!("missing: {}", missing.join(", ")),
            Some("create them (the checkpoint topic with cleanup.policy=compact), or set kafka.topics.create = true".into()),
        )
    });
    out
}

/// The broker's `transaction.max.timeout.ms` must allow the configured `transaction.timeout.ms`.
async fn transaction_timeout_check(
    admin: &AdminClient<DefaultClientContext>,
    broker: Option<i32>,
    configured_ms: u64,
) -> Check {
    let name = "kafka transaction timeout";
    let Some(broker) = broker else {
        return item(
            name,
            CheckStatus::Warn,
            "no broker in the metadata to ask".into(),
            None,
        );
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let max = match admin
        .describe_configs([&ResourceSpecifier::Broker(broker)], &opts)
        .await
    {
        Ok(results) => results.into_iter().flatten().find_map(|r| {
            r.get("transaction.max.timeout.ms")
                .and_then(|e| e.value.as_deref()?.parse::<u64>().ok())
        }),
        Err(_) => None,
    };
    match max {
        Some(max) if configured_ms > max => item(
            name,
            CheckStatus::Fail,
            format!("kafka.transaction_timeout_ms = {configured_ms} exceeds the broker's transaction.max.timeout.ms = {max}"),
            Some("lower kafka.transaction_timeout_ms, or raise transaction.max.timeout.ms on the brokers".into()),
        ),
        Some(max) => item(
            name,
            CheckStatus::Ok,
            format!(
                "{configured_ms} ms (broker allows up to {max} ms); the largest outbox transaction must stream within it"
            ),
            None,
        ),
        None => item(
            name,
            CheckStatus::Warn,
            format!(
                "{configured_ms} ms; the broker did not report transaction.max.timeout.ms, so it was not compared"
            ),
            None,
        ),
    }
}

async fn registry_check(config: &PipelineConfig) -> Check {
    let url = redact_url(&config.avro.registry_url);
    match outboxd_avro::check_schemas(&config.avro, false).await {
        Ok(report) if report.passed() => item(
            "schemas",
            CheckStatus::Ok,
            format!("{} subject(s) compatible at {url}", report.subjects.len()),
            None,
        ),
        Ok(report) => item(
            "schemas",
            CheckStatus::Fail,
            format!("at {url}:\n{}", report.to_string().trim_end()),
            Some(
                "fix the schema, or its subject's compatibility level (`outboxd schemas check` for details)"
                    .into(),
            ),
        ),
        Err(e) if e.is_retriable() => item(
            "schemas",
            CheckStatus::Fail,
            format!("schema registry at {url}: {e}"),
            Some("is the registry running and reachable? (avro.registry_url)".into()),
        ),
        Err(e) => item(
            "schemas",
            CheckStatus::Fail,
            e.to_string(),
            Some(format!(
                "check avro.schema_dir ({}) and its .avsc files, and avro.event_types",
                config.avro.schema_dir.display()
            )),
        ),
    }
}
