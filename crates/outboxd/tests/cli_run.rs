//! `outboxd run`, the binary, against the real services: `/readyz` answers 200 while it streams, `/metrics`
//! shows the counters moving as rows are inserted, and SIGTERM stops it with exit 0 after committing what it
//! had (every row exactly once for `read_committed`).

mod cli_support;
mod support;

use cli_support::free_port;
use outboxd::metrics as m;
use outboxd_testkit::kafka::Isolation;
use outboxd_testkit::wait_until;
use support::binary::{describe, Outboxd};
use support::{assert_exactly_once, Env, WAIT};

/// GET `url`: (status, body), or `None` when nothing answers.
async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The value of the first sample of `name` whose labels contain `labels` (`""` for any), from a Prometheus
/// text page.
fn sample(page: &str, name: &str, labels: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && rest.contains(labels))
            .then(|| value.parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_readyz_answers_and_sigterm_exits_0() {
    let env = Env::new().await;
    let port = free_port();
    let mut config = env.config.clone();
    config.observability.listen = format!("127.0.0.1:{port}");
    config.observability.lag_sample_interval_ms = 200;
    let file = env.config_file(&config, "run");
    let mut child = Outboxd::spawn(&file, &env.schema_dir.join("run.log"), None);
    let base = format!("http://127.0.0.1:{port}");

    let alive = |child: &mut Outboxd| {
        if let Some(status) = child.exited() {
            panic!(
                "outboxd exited early ({}):\n{}",
                describe(status),
                child.log_tail(30)
            );
        }
    };
    wait_until("/readyz answers 200", WAIT, || {
        alive(&mut child);
        let url = format!("{base}/readyz");
        async move { get(&url).await.filter(|(s, _)| *s == 200) }
    })
    .await;
    let (health, _) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!(health, 200);
    let (status, page) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        sample(&page, m::EVENTS_PRODUCED, "").unwrap_or(0.0),
        0.0,
        "nothing produced before any row:\n{page}"
    );

    let ids = env.insert_orders("m", 25, 5, 3).await;
    let page = wait_until("outboxd_events_produced_total reaches 25", WAIT, || {
        alive(&mut child);
        let url = format!("{base}/metrics");
        async move {
            let (_, page) = get(&url).await?;
            (sample(&page, m::EVENTS_PRODUCED, "")? >= 25.0).then_some(page)
        }
    })
    .await;
    assert_eq!(sample(&page, m::EVENTS_PRODUCED, ""), Some(25.0), "{page}");
    assert!(sample(&page, m::KAFKA_TRANSACTIONS, "outcome=\"committed\"").is_some_and(|n| n >= 1.0));
    assert!(
        sample(&page, &format!("{}_count", m::END_TO_END_LATENCY), "").is_some_and(|n| n >= 5.0),
        "one latency sample per Postgres transaction (5 of 5 rows):\n{page}"
    );
    assert!(
        sample(&page, &format!("{}_bucket", m::COMMIT_DURATION), "le=\"+Inf\"").is_some_and(|n| n >= 1.0),
        "{page}"
    );
    wait_until("outboxd_slot_active is 1", WAIT, || {
        let url = format!("{base}/metrics");
        async move { (sample(&get(&url).await?.1, m::SLOT_ACTIVE, "")? == 1.0).then_some(()) }
    })
    .await;
    let (ready, _) = get(&format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready, 200, "still ready while streaming");

    let status = child.stop().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM: {}\n{}",
        describe(status),
        child.log_tail(30)
    );
    assert!(
        get(&format!("{base}/readyz")).await.is_none(),
        "the endpoint is gone with the process"
    );
    let records = env.drain(&env.topic("order"), Isolation::ReadCommitted).await;
    assert_exactly_once(&records, &ids);
}
