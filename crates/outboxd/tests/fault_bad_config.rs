//! Fault suite, bad configuration and bad command lines: `outboxd run` refuses them before touching anything —
//! afterwards no replication slot and no publication exist in the database and no topic of the configuration
//! exists on the broker. Needs `scripts/services up`.

mod support;

use outboxd::PipelineConfig;
use outboxd_testkit::kafka::client_config;
use outboxd_testkit::unique_name;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::binary::{write_config, OUTBOXD};
use support::Env;

/// Runs the binary to completion (with a deadline): (exit code, stdout + stderr).
async fn outboxd(args: &[&str], config: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(OUTBOXD);
    cmd.args(args)
        .env_remove("OUTBOXD_CONFIG")
        .env_remove("OUTBOXD_FAULT")
        .env("RUST_LOG", "info,librdkafka=off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let child = cmd.spawn().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("outboxd {args:?} did not exit within 60 s"))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The topic names on the broker that start with `prefix`.
fn topics_with_prefix(bootstrap: &str, prefix: &str) -> Vec<String> {
    let consumer: BaseConsumer = client_config(bootstrap).create().unwrap();
    let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A configuration of fresh names (slot, publication, topics) that nothing has created yet.
fn fresh(env: &Env) -> (PipelineConfig, String) {
    let mut config = env.config.clone();
    let prefix = unique_name("bad");
    config.source.slot = unique_name("badslot");
    config.source.publication = unique_name("badpub");
    config.kafka.routing.topic_template = format!("{prefix}.{{aggregate_type}}");
    config.kafka.dlq_topic = format!("{prefix}.dlq");
    config.kafka.checkpoint_topic = format!("{prefix}.checkpoints");
    config.restart.max_restarts = Some(2);
    config.observability.listen = String::new();
    (config, prefix)
}

/// Asserts that `config`'s slot, publication and topics do not exist.
async fn assert_no_side_effects(env: &Env, config: &PipelineConfig, prefix: &str, case: &str) {
    let slots: i64 = env
        .db
        .client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&config.source.slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "{case}: a replication slot was created");
    let publications: i64 = env
        .db
        .client
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&config.source.publication],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(publications, 0, "{case}: a publication was created");
    let (bootstrap, prefix) = (env.services.kafka_bootstrap.clone(), prefix.to_string());
    let topics = tokio::task::spawn_blocking(move || topics_with_prefix(&bootstrap, &prefix))
        .await
        .unwrap();
    assert!(topics.is_empty(), "{case}: topics were created: {topics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configurations_and_commands_leave_no_slot_publication_or_topic() {
    let env = Env::new().await;
    let dir = &env.schema_dir;
    type Breaker = fn(&mut PipelineConfig, &Path) -> String;
    let cases: [(&str, Breaker, i32, &str); 5] = [
        ("unknown key", |_, _| "bogus_key = 1\n".into(), 2, "bogus_key"),
        (
            "bad topic template",
            |c, _| {
                c.kafka.routing.topic_template = "orders.{no_such_field}".into();
                String::new()
            },
            2,
            "topic_template",
        ),
        (
            "invalid DLQ topic name",
            |c, _| {
                c.kafka.dlq_topic = "dead letters!".into();
                String::new()
            },
            2,
            "dlq_topic",
        ),
        (
            "invalid slot name",
            |c, _| {
                c.source.slot = "Bad-Slot".into();
                String::new()
            },
            2,
            "slot",
        ),
        (
            "missing schema dir",
            |c, d| {
                c.avro.schema_dir = d.join("no_such_schema_dir");
                String::new()
            },
            1,
            "no_such_schema_dir",
        ),
    ];
    for (case, breaker, code, named) in cases {
        let (mut config, prefix) = fresh(&env);
        let original = config.clone();
        let prepend = breaker(&mut config, dir);
        let file = dir.join(format!("{}.toml", unique_name("bad")));
        write_config(&config, &file);
        if !prepend.is_empty() {
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(&file, format!("{prepend}{text}")).unwrap();
        }
        let (got, output) = outboxd(&["run"], Some(&file)).await;
        assert_eq!(got, Some(code), "{case}: exit code; output:\n{output}");
        assert!(
            output.contains(named),
            "{case}: the message names {named:?}:\n{output}"
        );
        assert_no_side_effects(&env, &original, &prefix, case).await;
        eprintln!("bad configuration refused without side effects: {case} (exit {code})");
    }

    let (got, output) = outboxd(&["bogus-command"], None).await;
    assert_eq!(got, Some(2), "an unknown subcommand is a usage error:\n{output}");
    assert!(output.contains("bogus-command"), "{output}");
}
