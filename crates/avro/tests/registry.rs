//! The gate and the encoder against a real registry (`OUTBOXD_REGISTRY_URL`): evolution, refusal, levels,
//! round trips decoded with the registry's schema, keys, `latest` sources and lookups.

mod common;

use common::{config, get, record, schema_by_id, topic_config, versions, SchemaDir};
use outboxd_avro::frame::{decode_datum, unframe};
use outboxd_avro::{
    check_schemas, reason, AvroError, CompatibilityLevel, EncodeError, Encoder, KeyFormat, Outcome,
    SubjectStrategy,
};
use outboxd_testkit::{unique_name, Services};

const V1_FIELDS: &str = r#"[{"name":"id","type":"string"},{"name":"qty","type":"int"}]"#;
const V2_OPTIONAL: &str = r#"[{"name":"id","type":"string"},{"name":"qty","type":"int"},{"name":"note","type":["null","string"],"default":null}]"#;
const V2_TYPE_CHANGED: &str = r#"[{"name":"id","type":"string"},{"name":"qty","type":"string"}]"#;
const V2_REQUIRED: &str =
    r#"[{"name":"id","type":"string"},{"name":"qty","type":"int"},{"name":"sku","type":"string"}]"#;
const V2_REMOVED: &str = r#"[{"name":"id","type":"string"}]"#;

fn url() -> String {
    Services::from_env().registry_url
}

fn only_outcome(report: &outboxd_avro::GateReport) -> Outcome {
    assert_eq!(report.subjects.len(), 1, "{report}");
    report.subjects[0].outcome.clone()
}

#[tokio::test]
async fn compatible_evolution_gets_a_new_id_and_the_encoder_uses_it() {
    let url = url();
    let ns = unique_name("ns");
    let dir = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V1_FIELDS))]);
    let subject = format!("{ns}.Order");

    let v1 = Encoder::connect(config(&url, &dir.path)).await.unwrap();
    let Outcome::Registered {
        id: id1,
        version: Some(1),
    } = only_outcome(v1.gate_report())
    else {
        panic!("v1 not registered as version 1: {}", v1.gate_report())
    };
    let e1 = v1
        .encode("orders", "Order", br#"{"id":"a","qty":1}"#)
        .await
        .unwrap();
    assert_eq!(
        (e1.schema_id, &*e1.subject, e1.version),
        (id1, subject.as_str(), Some(1))
    );
    assert_eq!(unframe(&e1.bytes).unwrap().0, id1);

    dir.write("Order.avsc", &record(&ns, "Order", V2_OPTIONAL));
    let v2 = Encoder::connect(config(&url, &dir.path)).await.unwrap();
    let Outcome::Registered {
        id: id2,
        version: Some(2),
    } = only_outcome(v2.gate_report())
    else {
        panic!("v2 not registered as version 2: {}", v2.gate_report())
    };
    assert_ne!(id1, id2, "a new schema version must get a new id");
    let e2 = v2
        .encode("orders", "Order", br#"{"id":"a","qty":1,"note":"n"}"#)
        .await
        .unwrap();
    assert_eq!((e2.schema_id, e2.version), (id2, Some(2)));
    assert_eq!(unframe(&e2.bytes).unwrap().0, id2);
    // The first encoder keeps its own schema and id: nothing is cached per subject across encoders.
    assert_eq!(
        v1.encode("orders", "Order", br#"{"id":"b","qty":2}"#)
            .await
            .unwrap()
            .schema_id,
        id1
    );
    assert_eq!(versions(&url, &subject).await, [1, 2]);
    // Connecting again with v2 is idempotent.
    let again = Encoder::connect(config(&url, &dir.path)).await.unwrap();
    assert_eq!(
        only_outcome(again.gate_report()),
        Outcome::Registered {
            id: id2,
            version: Some(2)
        }
    );
}

#[tokio::test]
async fn incompatible_changes_are_refused_naming_subject_level_and_reason() {
    let url = url();
    for (change, fields, why) in [
        (
            "type int->string",
            V2_TYPE_CHANGED,
            "$.qty: type changed from int to string",
        ),
        (
            "new required field",
            V2_REQUIRED,
            "$.sku: added without a default",
        ),
    ] {
        let ns = unique_name("ns");
        let subject = format!("{ns}.Order");
        let dir = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V1_FIELDS))]);
        Encoder::connect(config(&url, &dir.path)).await.unwrap();
        dir.write("Order.avsc", &record(&ns, "Order", fields));

        let report = check_schemas(&config(&url, &dir.path), false).await.unwrap();
        assert!(!report.passed(), "{change}: {report}");
        let entry = &report.subjects[0];
        assert_eq!(
            (entry.subject.as_str(), entry.level),
            (subject.as_str(), CompatibilityLevel::Backward)
        );
        let Outcome::Incompatible { reasons } = &entry.outcome else {
            panic!("{change}: {report}")
        };
        assert!(
            !reasons.is_empty() && reasons.iter().all(|r| !r.is_empty()),
            "{change}: {reasons:?}"
        );
        // Whatever the registry says (some answer only {"is_compatible":false}), the field is named.
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(why) && r.contains("[against version 1]")),
            "{change}: {reasons:?}"
        );
        let text = report.to_string();
        assert!(
            text.contains(&subject) && text.contains("BACKWARD") && text.contains(&reasons[0]),
            "{text}"
        );

        let err = Encoder::connect(config(&url, &dir.path)).await.unwrap_err();
        assert!(!err.is_retriable(), "{err}");
        let AvroError::GateFailed(r) = &err else {
            panic!("{change}: {err}")
        };
        assert!(
            matches!(r.subjects[0].outcome, Outcome::Incompatible { .. }),
            "{r}"
        );
        assert_eq!(
            versions(&url, &subject).await,
            [1],
            "{change}: nothing new may be registered"
        );
    }
}

/// (v2 fields, expected compatible under BACKWARD, FORWARD, FULL).
const LEVEL_CASES: [(&str, &str, [bool; 3]); 3] = [
    ("optional field added", V2_OPTIONAL, [true, true, true]),
    ("required field added", V2_REQUIRED, [false, true, false]),
    ("required field removed", V2_REMOVED, [true, false, false]),
];

#[tokio::test]
async fn gate_results_for_backward_forward_full() {
    let url = url();
    let levels = [
        CompatibilityLevel::Backward,
        CompatibilityLevel::Forward,
        CompatibilityLevel::Full,
    ];
    for (change, fields, expected) in LEVEL_CASES {
        for (level, compatible) in levels.into_iter().zip(expected) {
            let ns = unique_name("ns");
            let subject = format!("{ns}.Order");
            let dir = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V1_FIELDS))]);
            let mut cfg = config(&url, &dir.path);
            cfg.subject_compatibility.insert(subject.clone(), level);
            let first = check_schemas(&cfg, true).await.unwrap();
            assert!(first.passed(), "{first}");
            let (status, body) = get(&url, &format!("/config/{subject}")).await;
            assert_eq!(status, 200);
            let applied = body
                .get("compatibilityLevel")
                .or_else(|| body.get("compatibility"));
            assert_eq!(
                applied.and_then(|v| v.as_str()),
                Some(level.as_str()),
                "level set by the gate"
            );

            dir.write("Order.avsc", &record(&ns, "Order", fields));
            let report = check_schemas(&cfg, false).await.unwrap();
            assert_eq!(report.passed(), compatible, "{change} at {level}: {report}");
            let outcome = only_outcome(&report);
            if compatible {
                assert_eq!(outcome, Outcome::Compatible, "{change} at {level}");
            } else {
                assert!(
                    matches!(outcome, Outcome::Incompatible { .. }),
                    "{change} at {level}: {report}"
                );
            }
            assert_eq!(report.subjects[0].level, level);
            assert_eq!(
                versions(&url, &subject).await,
                [1],
                "a check with register = false registers nothing"
            );
        }
    }
}

#[tokio::test]
async fn unmanaged_level_that_differs_fails_the_gate() {
    let url = url();
    let ns = unique_name("ns");
    let dir = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V1_FIELDS))]);
    let mut cfg = config(&url, &dir.path);
    cfg.compatibility = CompatibilityLevel::FullTransitive;
    cfg.manage_compatibility = false;
    let report = check_schemas(&cfg, true).await.unwrap();
    assert!(!report.passed());
    assert!(
        matches!(
            only_outcome(&report),
            Outcome::LevelMismatch { registry: Some(_) }
        ),
        "{report}"
    );
    assert!(versions(&url, &format!("{ns}.Order")).await.is_empty());
}

#[tokio::test]
async fn round_trip_decodes_with_the_schema_fetched_by_id() {
    let url = url();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/schemas");
    let topic = unique_name("orders");
    let encoder = Encoder::connect(topic_config(&url, demo.as_ref())).await.unwrap();
    let decoder = schema_registry_converter::async_impl::avro::AvroDecoder::new(
        schema_registry_converter::async_impl::schema_registry::SrSettings::new(url.clone()),
    );
    for (event_type, payload) in [
        ("OrderCreated", include_str!("data/OrderCreated.json")),
        ("OrderPaid", include_str!("data/OrderPaid.json")),
    ] {
        let encoded = encoder
            .encode(&topic, event_type, payload.as_bytes())
            .await
            .unwrap();
        assert_eq!(
            &*encoded.subject,
            format!("{topic}-com.example.orders.{event_type}")
        );
        let (id, datum) = unframe(&encoded.bytes).unwrap();
        assert_eq!(id, encoded.schema_id);
        let registry_schema = schema_by_id(&url, id).await;
        let decoded = decode_datum(&registry_schema, datum).unwrap();
        // The input, converted independently with the registry's copy of the schema.
        let names = outboxd_avro::convert::named_types(&registry_schema).unwrap();
        let json: serde_json::Value = serde_json::from_str(payload).unwrap();
        let expected = outboxd_avro::convert::Converter::new(&names, Default::default())
            .convert(&json, &registry_schema)
            .unwrap();
        assert_eq!(decoded, expected, "{event_type}");
        // And schema_registry_converter reads the same frame to the same value.
        let other = decoder.decode(Some(&encoded.bytes)).await.unwrap();
        assert_eq!(other.value, decoded, "{event_type}");
    }
}

#[tokio::test]
async fn avro_keys_are_framed_strings_under_the_key_subject() {
    let url = url();
    let ns = unique_name("ns");
    let dir = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V1_FIELDS))]);
    let topic = unique_name("orders");
    let plain = Encoder::connect(config(&url, &dir.path)).await.unwrap();
    assert_eq!(plain.encode_key(&topic, "order-7").await.unwrap(), b"order-7");
    let encoder = Encoder::connect(outboxd_avro::AvroConfig {
        key_format: KeyFormat::Avro,
        ..config(&url, &dir.path)
    })
    .await
    .unwrap();
    let key = encoder.encode_key(&topic, "order-7").await.unwrap();
    let (id, datum) = unframe(&key).unwrap();
    assert_eq!(schema_by_id(&url, id).await, apache_avro::Schema::String);
    assert_eq!(
        decode_datum(&apache_avro::Schema::String, datum).unwrap(),
        apache_avro::types::Value::String("order-7".into())
    );
    assert_eq!(versions(&url, &format!("{topic}-key")).await, [1]);
    assert_eq!(
        encoder.encode_key(&topic, "order-8").await.unwrap()[..5],
        key[..5],
        "cached id"
    );
}

#[tokio::test]
async fn without_auto_register_a_schema_must_exist_and_is_found_by_listing() {
    let url = url();
    let ns = unique_name("ns");
    let dir = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V1_FIELDS))]);
    let strict = outboxd_avro::AvroConfig {
        auto_register: false,
        ..config(&url, &dir.path)
    };
    let err = Encoder::connect(strict.clone()).await.unwrap_err();
    let AvroError::GateFailed(report) = &err else {
        panic!("{err}")
    };
    assert_eq!(only_outcome(report), Outcome::Missing);
    assert!(err.to_string().contains("auto_register is off"), "{err}");

    let registered = Encoder::connect(config(&url, &dir.path)).await.unwrap();
    let Outcome::Registered { id, .. } = only_outcome(registered.gate_report()) else {
        panic!()
    };
    // Registering a second version, so that the lookup must pick the right one of several.
    dir.write("Order.avsc", &record(&ns, "Order", V2_OPTIONAL));
    Encoder::connect(config(&url, &dir.path)).await.unwrap();
    dir.write("Order.avsc", &record(&ns, "Order", V1_FIELDS));
    let found = Encoder::connect(strict).await.unwrap();
    assert_eq!(
        only_outcome(found.gate_report()),
        Outcome::Registered { id, version: Some(1) }
    );
}

#[tokio::test]
async fn latest_sources_use_the_registry_schema_and_id() {
    let url = url();
    let ns = unique_name("ns");
    let owner = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V2_OPTIONAL))]);
    let registered = Encoder::connect(config(&url, &owner.path)).await.unwrap();
    let Outcome::Registered { id, .. } = only_outcome(registered.gate_report()) else {
        panic!()
    };

    let empty = SchemaDir::new(&[]);
    let mut cfg = config(&url, &empty.path);
    cfg.event_types
        .insert("OrderEvent".into(), format!("latest:{ns}.Order").parse().unwrap());
    cfg.event_types
        .insert("Ghost".into(), format!("latest:{ns}.Ghost").parse().unwrap());
    let report = check_schemas(&cfg, false).await.unwrap();
    let ghost = report
        .subjects
        .iter()
        .find(|s| s.subject.ends_with(".Ghost"))
        .unwrap();
    assert_eq!(ghost.outcome, Outcome::Missing);
    cfg.event_types.remove("Ghost");
    let encoder = Encoder::connect(cfg).await.unwrap();
    let e = encoder
        .encode("t", "OrderEvent", br#"{"id":"x","qty":3}"#)
        .await
        .unwrap();
    assert_eq!((e.schema_id, e.version), (id, Some(1)));
}

#[tokio::test]
async fn rejections_carry_reason_codes_through_the_encoder() {
    let url = url();
    let ns = unique_name("ns");
    let dir = SchemaDir::new(&[("Order.avsc", &record(&ns, "Order", V1_FIELDS))]);
    let encoder = Encoder::connect(config(&url, &dir.path)).await.unwrap();
    let reject = |r: Result<outboxd_avro::EncodedPayload, EncodeError>| match r {
        Err(EncodeError::Rejected(rej)) => rej,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let r = reject(encoder.encode("t", "Nope", b"{}").await);
    assert_eq!(r.reason, reason::UNKNOWN_EVENT_TYPE);
    assert!(r.detail.contains("\"Nope\""), "{}", r.detail);
    assert_eq!(
        reject(encoder.encode("t", "Order", b"not json").await).reason,
        reason::INVALID_JSON
    );
    let r = reject(encoder.encode("t", "Order", br#"{"id":"a","qty":"three"}"#).await);
    assert_eq!(r.reason, reason::SCHEMA_MISMATCH);
    assert!(
        r.detail.ends_with(r#"$.qty: expected int, got "three""#),
        "{}",
        r.detail
    );
}

#[tokio::test]
async fn topic_name_strategy_refuses_a_second_event_type_on_one_topic() {
    let url = url();
    let ns = unique_name("ns");
    let dir = SchemaDir::new(&[
        ("A.avsc", &record(&ns, "A", V1_FIELDS)),
        ("B.avsc", &record(&ns, "B", r#"[{"name":"other","type":"long"}]"#)),
    ]);
    let topic = unique_name("mixed");
    let cfg = outboxd_avro::AvroConfig {
        subject_strategy: SubjectStrategy::TopicName,
        ..config(&url, &dir.path)
    };
    let encoder = Encoder::connect(cfg).await.unwrap();
    assert_eq!(encoder.gate_report().deferred, ["A", "B"]);
    assert!(
        versions(&url, &format!("{topic}-value")).await.is_empty(),
        "nothing gated before first use"
    );
    let a = encoder
        .encode(&topic, "A", br#"{"id":"a","qty":1}"#)
        .await
        .unwrap();
    assert_eq!(&*a.subject, format!("{topic}-value"));
    match encoder.encode(&topic, "B", br#"{"other":1}"#).await {
        Err(EncodeError::Fatal(AvroError::GateFailed(r))) => {
            assert!(matches!(only_outcome(&r), Outcome::Incompatible { .. }), "{r}")
        }
        other => panic!("expected the gate to refuse B under {topic}-value, got {other:?}"),
    }
    assert_eq!(versions(&url, &format!("{topic}-value")).await, [1]);
}
