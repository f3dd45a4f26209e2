use super::*;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Conf {
    source: Source,
    kafka: Kafka,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Source {
    pg_url: String,
    password: Option<String>,
    channel_capacity: u64,
    create_slot: bool,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            pg_url: "postgres://localhost/app".into(),
            password: None,
            channel_capacity: 1024,
            create_slot: true,
        }
    }
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Kafka {
    bootstrap_servers: String,
    librdkafka: BTreeMap<String, String>,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("outboxd-config-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn file_values_and_defaults_combine() {
    let d = tmpdir();
    let p = write(
        &d,
        "a.toml",
        "[source]\nchannel_capacity = 7\n[kafka]\nbootstrap_servers = \"k:9092\"\n",
    );
    let c: Conf = load(Some(&p), []).unwrap();
    assert_eq!(c.source.channel_capacity, 7);
    assert_eq!(c.source.pg_url, "postgres://localhost/app");
    assert_eq!(c.kafka.bootstrap_servers, "k:9092");
}

#[test]
fn unknown_key_names_the_key_and_the_file() {
    let d = tmpdir();
    let p = write(&d, "bad.toml", "[source]\nchanel_capacity = 7\n");
    let err = load::<Conf>(Some(&p), []).unwrap_err().to_string();
    assert!(err.contains("chanel_capacity"), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
}

#[test]
fn env_overrides_are_typed_by_the_defaults() {
    let env = [
        ("OUTBOXD_SOURCE__CHANNEL_CAPACITY".to_string(), "99".to_string()),
        ("OUTBOXD_SOURCE__CREATE_SLOT".into(), "false".into()),
        ("OUTBOXD_SOURCE__PASSWORD".into(), "12345".into()),
        (
            "OUTBOXD_KAFKA__LIBRDKAFKA".into(),
            "{ \"security.protocol\" = \"SSL\" }".into(),
        ),
        ("OUTBOXD_PG_URL".into(), "ignored: no double underscore".into()),
        ("OTHER__X".into(), "ignored: no prefix".into()),
    ];
    let c: Conf = load(None, env).unwrap();
    assert_eq!(c.source.channel_capacity, 99);
    assert!(!c.source.create_slot);
    assert_eq!(
        c.source.password.as_deref(),
        Some("12345"),
        "a numeric secret stays a string"
    );
    assert_eq!(
        c.kafka.librdkafka.get("security.protocol").map(String::as_str),
        Some("SSL")
    );
}

#[test]
fn bad_env_override_names_the_variable() {
    let env = [("OUTBOXD_SOURCE__CHANNEL_CAPACITY".to_string(), "many".to_string())];
    let err = load::<Conf>(None, env).unwrap_err().to_string();
    assert!(
        err.contains("OUTBOXD_SOURCE__CHANNEL_CAPACITY") && err.contains("integer"),
        "{err}"
    );
    let env = [("OUTBOXD_SOURCE__NOPE".to_string(), "1".to_string())];
    let err = load::<Conf>(None, env).unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("OUTBOXD_SOURCE__NOPE"),
        "{err}"
    );
}

#[test]
fn secrets_come_from_files() {
    let d = tmpdir();
    let secret = write(&d, "pw", "s3cret\n");
    let p = write(
        &d,
        "c.toml",
        &format!("[source]\npassword_file = {:?}\n", secret.display().to_string()),
    );
    let c: Conf = load(Some(&p), []).unwrap();
    assert_eq!(c.source.password.as_deref(), Some("s3cret"));
    let p = write(
        &d,
        "missing.toml",
        "[source]\npassword_file = \"/nonexistent/pw\"\n",
    );
    let err = load::<Conf>(Some(&p), []).unwrap_err().to_string();
    assert!(
        err.contains("source.password_file") && err.contains("/nonexistent/pw"),
        "{err}"
    );
}

#[test]
fn print_config_redacts_secrets() {
    let mut c = Conf::default();
    c.source.pg_url = "postgres://app:hunter2@db:5432/app".into();
    c.source.password = Some("hunter3".into());
    c.kafka
        .librdkafka
        .insert("sasl.password".into(), "hunter4".into());
    c.kafka.librdkafka.insert("sasl.username".into(), "me".into());
    let text = redacted_toml(&c).unwrap();
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
    }
    assert!(text.contains("postgres://app:***@db:5432/app"), "{text}");
    assert!(text.contains("me"), "non-secrets stay visible:\n{text}");
    assert_eq!(
        redact_url("host=db password=x user=u"),
        "host=db password=*** user=u"
    );
}
