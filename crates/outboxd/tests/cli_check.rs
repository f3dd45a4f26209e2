//! `outboxd check`, the binary, against the real services: exit 0 on a good setup, exit 3 with a `[FAIL]` line
//! (and a fix) for each cause: `wal_level = replica`, a missing publication it may not create, a schema
//! incompatible with the registered version, an unreachable broker.

mod cli_support;
mod support;

use cli_support::{run, Output, TempDir};
use outboxd::PipelineConfig;
use outboxd_testkit::cluster::{free_port, Cluster, Setup};
use outboxd_testkit::unique_name;
use support::Env;

/// The names of the checks that failed (`[FAIL] <name>: ...` lines).
fn failed(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("[FAIL] "))
        .map(|l| l.split(':').next().unwrap_or_default().trim().to_string())
        .collect()
}

/// Runs `outboxd check` with this configuration.
async fn check(env: &Env, config: &PipelineConfig, name: &str) -> Output {
    run(&["check"], &env.config_file(config, name)).await
}

/// Rows already in the table when the slot does not exist yet are never silent: `check` counts them, and
/// the first start creates the slot before its producer starts, so that what is written from then on is
/// relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_that_predate_the_slot_are_counted_and_the_first_start_relays_what_follows() {
    let mut env = Env::new().await;
    env.config.source.slot = unique_name("fresh_slot");
    let before = env.insert_orders("old", 3, 1, 1).await;
    let out = check(&env, &env.config, "noslot").await;
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("the 3 row(s) already in public.outbox predate it and will not be relayed"),
        "{}",
        out.stdout
    );
    let mut backfilling = env.config.clone();
    backfilling.source.backfill.enabled = true;
    let out = check(&env, &backfilling, "noslot_backfill").await;
    out.assert_code(0);
    assert!(
        out.stdout.contains(
            "the 3 row(s) already in public.outbox predate it and outboxd will backfill all of them"
        ),
        "{}",
        out.stdout
    );
    let running = env.spawn(outboxd::FaultPlan::none());
    // The slot exists once the pipeline got past its first step: what is written now is relayed.
    let slot = env.config.source.slot.clone();
    outboxd_testkit::wait_until("the pipeline created its slot", support::WAIT, || async {
        let row = env
            .db
            .client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap();
        row.map(|_| ())
    })
    .await;
    let after = env.insert_orders("new", 5, 1, 2).await;
    let records = env.wait_for(&env.topic("order"), 5, &running).await;
    running.stop().await.unwrap();
    let mut ids: Vec<String> = records.iter().filter_map(|r| r.header("id")).collect();
    ids.sort();
    let mut want = after.clone();
    want.sort();
    assert_eq!(
        ids, want,
        "every row written after the slot exists, once; none of {before:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes() {
    let env = Env::new().await;
    let out = check(&env, &env.config, "good").await;
    out.assert_code(0);
    assert!(failed(&out).is_empty(), "{}", out.all());
    for line in [
        "[ok]   wal_level",
        "[ok]   publication",
        "[ok]   kafka:",
        "[ok]   schemas",
    ] {
        assert!(out.stdout.contains(line), "{line:?} expected:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("check: passed"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_replica_fails_with_exit_3() {
    let env = Env::new().await;
    let cluster = Cluster::start(Setup {
        conf: "wal_level = replica",
        ..Setup::default()
    })
    .await;
    cluster.execute(include_str!("../../../config/outbox.sql")).await;
    let mut config = env.config.clone();
    config.source.pg_url = cluster.url("postgres");
    let out = check(&env, &config, "replica").await;
    out.assert_code(3);
    assert!(failed(&out).contains(&"wal_level".to_string()), "{}", out.all());
    assert!(
        out.stdout.contains("ALTER SYSTEM SET wal_level = logical"),
        "the fix is named:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("check(s) failed"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_publication_it_may_not_create_fails_with_exit_3() {
    let env = Env::new().await;
    let mut config = env.config.clone();
    config.source.publication = unique_name("absent");
    config.source.create_publication = false;
    let out = check(&env, &config, "nopub").await;
    out.assert_code(3);
    assert_eq!(failed(&out), vec!["publication".to_string()], "{}", out.all());
    assert!(out.stdout.contains(&config.source.publication), "{}", out.stdout);

    // The same publication, allowed to create it: passes (check changes nothing).
    config.source.create_publication = true;
    check(&env, &config, "mkpub").await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_fails_with_exit_3() {
    let env = Env::new().await;
    // v1 registered (what `outboxd schemas register` does before a deploy).
    let config_file = env.config_file(&env.config, "v1");
    run(&["schemas", "register"], &config_file).await.assert_code(0);

    // v2 changes `amount` from int to string: BACKWARD-incompatible under the same subject.
    let dir = TempDir::new("outboxd_cli_check_schemas");
    let ns = &env.ns;
    std::fs::write(
        dir.join("OrderCreated.avsc"),
        format!(
            r#"{{"type":"record","name":"OrderCreated","namespace":"{ns}","fields":[
                {{"name":"orderId","type":"string"}},{{"name":"amount","type":"string"}}]}}"#
        ),
    )
    .unwrap();
    let mut config = env.config.clone();
    config.avro.schema_dir = dir.0.clone();
    let out = check(&env, &config, "v2").await;
    out.assert_code(3);
    assert_eq!(failed(&out), vec!["schemas".to_string()], "{}", out.all());
    assert!(
        out.stdout.contains(&format!("{ns}.OrderCreated")),
        "the subject is named:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("$.amount: type changed from int to string"),
        "the reason names the field:\n{}",
        out.stdout
    );
    // `schemas check`, the CI gate, agrees, and says why.
    let gate = run(&["schemas", "check"], &env.config_file(&config, "v2gate")).await;
    gate.assert_code(3);
    assert!(
        gate.all().contains("$.amount: type changed from int to string"),
        "{}",
        gate.all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_with_exit_3() {
    let env = Env::new().await;
    let mut config = env.config.clone();
    config.kafka.bootstrap_servers = format!("127.0.0.1:{}", free_port());
    config.kafka.request_timeout_ms = 2_000;
    let out = check(&env, &config, "nobroker").await;
    out.assert_code(3);
    assert_eq!(failed(&out), vec!["kafka".to_string()], "{}", out.all());
    assert!(
        out.stdout.contains(&config.kafka.bootstrap_servers),
        "the address is named:\n{}",
        out.stdout
    );
}
