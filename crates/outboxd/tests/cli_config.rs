//! The configuration as the binary loads it (no service needed): an unknown key is a usage error (exit 2)
//! naming the key and the file; `OUTBOXD_<SECTION>__<KEY>` overrides show in `run --print-config`; and no
//! secret — in the Postgres URL, `source.password` (also from a `_file`), `avro.registry_password`, or
//! `kafka.librdkafka."sasl.password"` — ever appears in what `--print-config` or a failing command prints.

mod cli_support;

use cli_support::{outboxd, run, run_with, TempDir};

const PG_SECRET: &str = "pg-url-s3cret";
const SOURCE_SECRET: &str = "source-file-s3cret";
const REGISTRY_SECRET: &str = "registry-s3cret";
const SASL_SECRET: &str = "sasl-s3cret";

#[tokio::test]
async fn an_unknown_key_is_exit_2_naming_the_key_and_the_file() {
    let dir = TempDir::new("outboxd_cli_config");
    let file = dir.join("typo.toml");
    std::fs::write(
        &file,
        "[source]\nslot = \"orders\"\n\n[kafka]\nbootstrap_server = \"kafka:9092\"\n",
    )
    .unwrap();
    for command in [&["check"][..], &["run", "--print-config"], &["dlq", "replay"]] {
        let out = run(command, &file).await;
        out.assert_code(2);
        assert!(
            out.stderr.contains("bootstrap_server") && out.stderr.contains(file.to_str().unwrap()),
            "{command:?}: the key and the file are named:\n{}",
            out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "{command:?}: nothing else ran:\n{}",
            out.stdout
        );
    }
    // A wrongly typed environment override names the variable.
    let good = dir.join("good.toml");
    std::fs::write(&good, "[source]\nslot = \"orders\"\n").unwrap();
    let out = run_with(
        outboxd(&["run", "--print-config"])
            .arg("--config")
            .arg(&good)
            .env("OUTBOXD_KAFKA__BATCH__MAX_EVENTS", "many"),
    )
    .await;
    out.assert_code(2);
    assert!(
        out.stderr.contains("OUTBOXD_KAFKA__BATCH__MAX_EVENTS") && out.stderr.contains("integer"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn environment_overrides_show_in_print_config() {
    let dir = TempDir::new("outboxd_cli_config");
    let file = dir.join("outboxd.toml");
    std::fs::write(
        &file,
        "[source]\nslot = \"from_file\"\n[kafka.batch]\nmax_events = 10\n",
    )
    .unwrap();
    let out = run_with(
        outboxd(&["run", "--print-config"])
            .arg("--config")
            .arg(&file)
            .env("OUTBOXD_SOURCE__SLOT", "from_env")
            .env("OUTBOXD_KAFKA__BATCH__MAX_EVENTS", "77"),
    )
    .await;
    out.assert_code(0);
    assert!(out.stdout.contains("slot = \"from_env\""), "{}", out.stdout);
    assert!(!out.stdout.contains("from_file"), "{}", out.stdout);
    assert!(
        out.stdout.contains("max_events = 77"),
        "typed as an integer:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn secrets_never_appear_in_print_config() {
    let dir = TempDir::new("outboxd_cli_config");
    let secret_file = dir.join("pg-password");
    std::fs::write(&secret_file, format!("{SOURCE_SECRET}\n")).unwrap();
    let file = dir.join("outboxd.toml");
    std::fs::write(
        &file,
        format!(
            r#"[source]
pg_url = "postgres://app:{PG_SECRET}@db.internal:5432/app?sslmode=require"
password_file = "{}"

[avro]
registry_url = "https://outboxd:{REGISTRY_SECRET}@registry.internal:8081"
registry_username = "outboxd"
registry_password = "{REGISTRY_SECRET}"

[kafka.librdkafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanisms" = "SCRAM-SHA-512"
"sasl.username" = "outboxd"
"sasl.password" = "{SASL_SECRET}"
"#,
            secret_file.display()
        ),
    )
    .unwrap();
    let out = run(&["run", "--print-config"], &file).await;
    out.assert_code(0);
    let all = out.all();
    for secret in [PG_SECRET, SOURCE_SECRET, REGISTRY_SECRET, SASL_SECRET] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    // Redacted, not dropped: the operator sees that each one is set.
    assert!(
        out.stdout.contains("postgres://app:***@db.internal:5432/app"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("sasl.username\" = \"outboxd\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.matches("\"***\"").count() >= 3,
        "source.password, avro.registry_password and sasl.password show as \"***\":\n{}",
        out.stdout
    );

    // A command that fails to reach those services does not print them either.
    let mut cmd = outboxd(&["check"]);
    cmd.arg("--config")
        .arg(&file)
        .env("OUTBOXD_SOURCE__CONNECT_TIMEOUT_MS", "1000")
        .env("OUTBOXD_KAFKA__REQUEST_TIMEOUT_MS", "1000")
        .env("OUTBOXD_AVRO__REQUEST_TIMEOUT_MS", "1000");
    let checked = run_with(&mut cmd).await;
    checked.assert_code(3);
    let all = checked.all();
    for secret in [PG_SECRET, SOURCE_SECRET, REGISTRY_SECRET, SASL_SECRET] {
        assert!(!all.contains(secret), "{secret} leaked by check:\n{all}");
    }
}

/// Passwords with the characters that break naive redaction (`@ : / %`), raw and percent-encoded, in the
/// Postgres URL and the registry URL: neither `--print-config` nor a failing `check` prints any part of them
/// (an earlier redactor split at the first `@` and printed the rest of such a password).
#[tokio::test]
async fn passwords_with_at_colon_slash_and_percent_never_appear() {
    let dir = TempDir::new("outboxd_cli_config");
    // Each secret is long and distinctive after its special characters, so that a partial leak shows.
    let raw = ["pq@Zx81:Lm42/Nv93%Kd77", "rg/Wq55@Tb61:%Hy23"];
    let encoded = ["pq%40Zx81%3ALm42%2FNv93%25Kd77", "rg%2FWq55%40Tb61%3A%25Hy23"];
    let fragments = ["Zx81", "Lm42", "Nv93", "Kd77", "Wq55", "Tb61", "Hy23"];
    for (i, (pg, registry)) in [(raw[0], raw[1]), (encoded[0], encoded[1])]
        .into_iter()
        .enumerate()
    {
        let file = dir.join(&format!("special-{i}.toml"));
        std::fs::write(
            &file,
            format!(
                r#"[source]
pg_url = "postgres://app:{pg}@127.0.0.1:1/app?sslmode=disable"

[avro]
registry_url = "http://outboxd:{registry}@127.0.0.1:1"
"#
            ),
        )
        .unwrap();
        let printed = run(&["run", "--print-config"], &file).await;
        let mut cmd = outboxd(&["check"]);
        cmd.arg("--config")
            .arg(&file)
            .env("OUTBOXD_SOURCE__CONNECT_TIMEOUT_MS", "1000")
            .env("OUTBOXD_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .env("OUTBOXD_KAFKA__REQUEST_TIMEOUT_MS", "1000")
            .env("OUTBOXD_AVRO__REQUEST_TIMEOUT_MS", "1000");
        let checked = run_with(&mut cmd).await;
        assert_ne!(checked.code, Some(0), "check cannot pass against port 1");
        for (what, out) in [("--print-config", &printed), ("check", &checked)] {
            let all = out.all();
            for f in fragments {
                assert!(
                    !all.contains(f),
                    "{what} (variant {i}) printed {f:?} of a password:\n{all}"
                );
            }
        }
        printed.assert_code(0);
        assert!(
            printed.stdout.contains("postgres://app:***@127.0.0.1:1/app"),
            "{}",
            printed.stdout
        );
    }
}
