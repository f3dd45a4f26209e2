//! `outboxd dlq replay`, the binary, against the real services: events rejected by a schema land in the
//! dead-letter topic; after a compatible schema fix the replay puts them on their topic exactly once (a second
//! replay moves nothing, a crash before the commit leaves nothing visible and a rerun replays once), and the
//! dead letters that still do not fit stay in the dead-letter topic with `dlq_replays` counting the attempts.

mod cli_support;
mod support;

use apache_avro::types::Value;
use cli_support::{outboxd, run, run_with, Output, TempDir};
use outboxd::FaultPlan;
use outboxd_testkit::kafka::{Isolation, Record};
use std::collections::BTreeSet;
use std::path::PathBuf;
use support::{assert_exactly_once, decode, ids, Env, Row};

/// An order without its required `amount`: rejected by v1, accepted by v2 (default 0).
fn without_amount(id: &str, aggregate_id: &str) -> Row {
    Row {
        payload: Some(format!(r#"{{"orderId":"{aggregate_id}"}}"#)),
        ..Row::order(id, aggregate_id, 0)
    }
}

/// An order whose amount is text: rejected by both versions.
fn amount_as_text(id: &str) -> Row {
    Row {
        payload: Some(r#"{"orderId":"x","amount":"three"}"#.into()),
        ..Row::order(id, "a9", 0)
    }
}

/// An event without aggregate type: it cannot be routed, so its dead letter names no intended topic.
fn unroutable(id: &str) -> Row {
    Row {
        aggregate_type: None,
        ..Row::order(id, "a8", 1)
    }
}

/// The test's world after a pipeline run that dead-lettered `rejected` (fixable) and `bad` (not fixable).
struct Replay {
    env: Env,
    /// Holds the fixed schemas until the test ends.
    _dir: TempDir,
    config: PathBuf,
    good: Vec<String>,
    fixable: Vec<String>,
    still_bad: Vec<String>,
}

impl Replay {
    async fn new() -> Replay {
        let env = Env::new().await;
        let good = env.insert_orders("good", 6, 3, 3).await;
        let fixable: Vec<String> = (0..4).map(|i| format!("fix-{i}")).collect();
        env.insert(
            &fixable
                .iter()
                .enumerate()
                .map(|(i, id)| without_amount(id, &format!("a{i}")))
                .collect::<Vec<_>>(),
        )
        .await;
        env.insert(&[amount_as_text("bad-text"), unroutable("bad-unroutable")])
            .await;
        let still_bad = vec!["bad-text".to_string(), "bad-unroutable".to_string()];
        let running = env.spawn(FaultPlan::none());
        env.wait_for(&env.topic("order"), good.len(), &running).await;
        env.wait_for(&env.config.kafka.dlq_topic, fixable.len() + 2, &running)
            .await;
        running.stop().await.unwrap();

        // The fix: v2 gives `amount` a default (BACKWARD compatible), in a schema directory of its own.
        let dir = TempDir::new("outboxd_cli_dlq");
        let schemas = dir.join("schemas");
        std::fs::create_dir_all(&schemas).unwrap();
        let ns = &env.ns;
        std::fs::write(
            schemas.join("OrderCreated.avsc"),
            format!(
                r#"{{"type":"record","name":"OrderCreated","namespace":"{ns}","fields":[
                    {{"name":"orderId","type":"string"}},{{"name":"amount","type":"int","default":0}}]}}"#
            ),
        )
        .unwrap();
        std::fs::copy(
            env.schema_dir.join("CustomerCreated.avsc"),
            schemas.join("CustomerCreated.avsc"),
        )
        .unwrap();
        let mut config = env.config.clone();
        config.avro.schema_dir = schemas;
        let config = env.config_file(&config, "replay");
        Replay {
            env,
            _dir: dir,
            config,
            good,
            fixable,
            still_bad,
        }
    }

    async fn topic(&self, isolation: Isolation) -> Vec<Record> {
        self.env.drain(&self.env.topic("order"), isolation).await
    }

    async fn dlq(&self) -> Vec<Record> {
        self.env
            .drain(&self.env.config.kafka.dlq_topic, Isolation::ReadCommitted)
            .await
    }

    async fn replay(&self, extra: &[&str]) -> Output {
        let mut args = vec!["dlq", "replay"];
        args.extend_from_slice(extra);
        run(&args, &self.config).await
    }

    fn expected(&self) -> Vec<String> {
        self.good.iter().chain(&self.fixable).cloned().collect()
    }
}

fn with_header<'a>(records: &'a [Record], name: &str, value: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.header(name).as_deref() == Some(value))
        .collect()
}

fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    match value {
        Value::Record(fields) => &fields.iter().find(|(n, _)| n == name).unwrap().1,
        other => panic!("not a record: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixed_dead_letters_are_replayed_exactly_once_and_the_rest_stay() {
    let t = Replay::new().await;
    let dead = t.dlq().await;
    assert_eq!(dead.len(), 6, "4 fixable and 2 bad dead letters");
    assert_eq!(
        with_header(&dead, "dlq_reason", "schema_mismatch").len(),
        5,
        "the 4 without amount and the text amount"
    );

    // Dry run: says what would happen, changes nothing.
    let dry = t.replay(&["--dry-run"]).await;
    dry.assert_code(0);
    assert!(
        dry.stdout.contains("would replay 4, would still fail 2")
            && dry.stdout.contains("nothing was produced or committed"),
        "{}",
        dry.all()
    );
    assert_eq!(t.topic(Isolation::ReadUncommitted).await.len(), t.good.len());
    assert_eq!(t.dlq().await.len(), 6);

    // The replay.
    let first = t.replay(&[]).await;
    first.assert_code(0);
    assert!(
        first.stdout.contains("replayed 4, still failing 2")
            && first.stdout.contains("schema_mismatch: 1")
            && first.stdout.contains("missing_fields: 1"),
        "{}",
        first.all()
    );
    for id in &t.still_bad {
        assert!(
            first.stdout.contains(&format!("id={id}")),
            "{id} is reported:\n{}",
            first.stdout
        );
    }
    let records = t.topic(Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &t.expected());
    let registry = &t.env.services.registry_url;
    for id in &t.fixable {
        let r = with_header(&records, "id", id)[0];
        let from = r
            .header("dlq_replayed_from")
            .unwrap_or_else(|| panic!("{id}: {r:?}"));
        let dead_letter = dead
            .iter()
            .find(|d| format!("{}/{}", d.partition, d.offset) == from)
            .unwrap_or_else(|| panic!("{id}: {from} names a dead letter"));
        assert_eq!(dead_letter.header("id").as_deref(), Some(id.as_str()));
        for name in ["event_type", "aggregate_type", "outbox_lsn", "commit_time"] {
            assert_eq!(r.header(name), dead_letter.header(name), "{id}: {name}");
        }
        assert_eq!(r.key, dead_letter.key, "{id}: keyed by aggregate id");
        let (schema_id, value) = decode(registry, r.value.as_deref().unwrap()).await;
        assert_eq!(r.header("schema_id"), Some(schema_id.to_string()));
        assert_eq!(field(&value, "amount"), &Value::Int(0), "{id}: v2's default");
        assert!(r.header("dlq_reason").is_none());
    }
    let dead_after = t.dlq().await;
    let requeued = with_header(&dead_after, "dlq_replays", "1");
    assert_eq!(
        ids(&requeued.iter().map(|r| (*r).clone()).collect::<Vec<_>>())
            .into_iter()
            .collect::<BTreeSet<_>>(),
        t.still_bad.iter().cloned().collect(),
        "the bad ones are appended again, once each"
    );
    assert_eq!(dead_after.len(), 6 + 2);
    let unroutable = with_header(&dead_after, "id", "bad-unroutable");
    assert_eq!(
        unroutable[1].header("dlq_reason").as_deref(),
        Some("missing_fields")
    );
    assert_eq!(unroutable[1].value, unroutable[0].value, "kept as it was");

    // A second replay moves nothing: the fixed ones were handled, the bad ones fail again.
    let second = t.replay(&[]).await;
    second.assert_code(0);
    assert!(
        second.stdout.contains("replayed 0, still failing 2"),
        "{}",
        second.all()
    );
    assert_exactly_once(&t.topic(Isolation::ReadCommitted).await, &t.expected());
    let dead_last = t.dlq().await;
    assert_eq!(dead_last.len(), 6 + 2 + 2);
    assert_eq!(with_header(&dead_last, "dlq_replays", "2").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_before_the_commit_leaves_nothing_and_reruns_replay_once() {
    let t = Replay::new().await;
    let crashed = run_with(
        outboxd(&["dlq", "replay"])
            .arg("--config")
            .arg(&t.config)
            .env("OUTBOXD_FAULT", "crash_before_commit:1"),
    )
    .await;
    assert_eq!(crashed.signal, Some(6), "SIGABRT expected:\n{}", crashed.all());
    let uncommitted = t.topic(Isolation::ReadUncommitted).await;
    assert_eq!(
        uncommitted.len(),
        t.good.len() + t.fixable.len(),
        "the crashed replay's records reached the broker"
    );
    let dead_uncommitted = t
        .env
        .drain(&t.env.config.kafka.dlq_topic, Isolation::ReadUncommitted)
        .await;
    assert_eq!(dead_uncommitted.len(), 6 + 2, "and its requeued dead letters");
    // (read_committed readers wait here: the crashed transaction stays open until the next replay fences it.)

    // --max-events 1 fences the crashed one (its transaction aborted) and handles one dead letter; then a
    // full run the rest (and, when the first one was a bad one, its copy appended by the first run).
    let one = t.replay(&["--max-events", "1"]).await;
    one.assert_code(0);
    assert!(one.stdout.contains("of 1 dead letter(s) read"), "{}", one.all());
    assert_eq!(
        t.topic(Isolation::ReadCommitted).await.len() as u64,
        t.good.len() as u64 + replayed(&one),
        "nothing of the crashed replay is visible to read_committed"
    );
    let rest = t.replay(&[]).await;
    rest.assert_code(0);
    assert_eq!(
        replayed(&one) + replayed(&rest),
        t.fixable.len() as u64,
        "{}\n{}",
        one.all(),
        rest.all()
    );
    // Every partition's offset goes with every commit, so that what the next transaction commits never
    // depends on what a crashed one had sent (a broker that kept those offsets past the abort would
    // otherwise commit them with the next transaction and skip dead letters).
    let records = t.topic(Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &t.expected());
    let dead = t.dlq().await;
    for id in &t.still_bad {
        let copies = with_header(&dead, "id", id);
        assert!(
            copies.len() >= 2 && copies.iter().all(|r| r.header("dlq_reason").is_some()),
            "{id} stays in the dead-letter topic: {copies:?}"
        );
    }
}

/// N of the summary's `replayed N,`.
fn replayed(out: &Output) -> u64 {
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("replayed "))
        .unwrap_or_else(|| panic!("no summary:\n{}", out.all()));
    line["replayed ".len()..]
        .split(',')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad summary {line:?}"))
}
