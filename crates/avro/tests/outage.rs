//! A registry that goes away mid-run: errors are retriable (nothing rejected), and encoding recovers when it
//! returns. Uses a private registry process (`OUTBOXD_REGISTRY_BIN`) on a free port, killed and restarted.

mod common;

use common::{record, topic_config, SchemaDir};
use outboxd_avro::{check_schemas, EncodeError, Encoder};
use outboxd_testkit::registry::PrivateRegistry;
use outboxd_testkit::unique_name;
use std::time::Duration;

#[tokio::test]
async fn registry_outage_is_retriable_and_encoding_recovers() {
    let mut registry = PrivateRegistry::start().await;
    let url = registry.url();
    let ns = unique_name("ns");
    let dir = SchemaDir::new(&[(
        "Order.avsc",
        &record(
            &ns,
            "Order",
            r#"[{"name":"id","type":"string"},{"name":"qty","type":"int"}]"#,
        ),
    )]);
    let cfg = outboxd_avro::AvroConfig {
        request_timeout_ms: 1_000,
        ..topic_config(&url, &dir.path)
    };
    let payload = br#"{"id":"a","qty":1}"#;

    let encoder = Encoder::connect(cfg.clone()).await.unwrap();
    let first = encoder.encode("orders", "Order", payload).await.unwrap();
    registry.kill().await;

    // A pair already gated needs no registry: the steady state makes no round trip.
    assert_eq!(encoder.encode("orders", "Order", payload).await.unwrap(), first);
    // A new pair needs the registry, which is away: retriable, not a rejection.
    match encoder.encode("payments", "Order", payload).await {
        Err(EncodeError::Retriable(e)) => assert!(e.is_retriable(), "{e}"),
        other => panic!("expected a retriable error while the registry is down, got {other:?}"),
    }
    let err = check_schemas(&cfg, false).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    let mut down = cfg.clone();
    down.subject_strategy = outboxd_avro::SubjectStrategy::RecordName;
    let err = Encoder::connect(down).await.unwrap_err();
    assert!(err.is_retriable(), "connect while the registry is down: {err}");

    registry.restart().await;
    let recovered = encoder.encode("payments", "Order", payload).await.unwrap();
    assert_eq!(&*recovered.subject, format!("payments-{ns}.Order"));
    assert_eq!(
        outboxd_avro::frame::unframe(&recovered.bytes).unwrap().0,
        recovered.schema_id
    );

    // A registry that accepts connections but does not answer: the request times out, retriable.
    let pid = registry.pid().expect("registry pid").to_string();
    signal(&pid, "-STOP");
    let started = std::time::Instant::now();
    match encoder.encode("refunds", "Order", payload).await {
        Err(EncodeError::Retriable(e)) => assert!(e.is_retriable(), "{e}"),
        other => panic!("expected a retriable timeout from a stopped registry, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(cfg.request_timeout_ms),
        "it waited for the timeout"
    );
    signal(&pid, "-CONT");
    assert!(
        encoder.encode("refunds", "Order", payload).await.is_ok(),
        "recovers once the registry answers"
    );
    registry.kill().await;
}

fn signal(pid: &str, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}
