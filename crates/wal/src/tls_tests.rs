use super::*;
use crate::SourceConfig;

fn settings(pg_url: &str, ssl_root_cert: Option<&str>) -> TlsSettings {
    SourceConfig {
        pg_url: pg_url.into(),
        ssl_root_cert: ssl_root_cert.map(PathBuf::from),
        ..SourceConfig::default()
    }
    .tls_settings()
    .unwrap()
}

#[test]
fn sslmode_values() {
    for (text, mode) in [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Prefer),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ] {
        assert_eq!(SslMode::parse(text).unwrap(), mode, "{text}");
    }
    assert!(SslMode::parse("verify_full").is_err());
    assert_eq!(SslMode::VerifyCa.to_string(), "verify-ca");
    assert!(SslMode::Require.requires_tls() && !SslMode::Prefer.requires_tls());
}

#[test]
fn libpq_rules() {
    let s = |url, root| {
        let t = settings(url, root);
        (t.mode, t.root_cert.map(|p| p.display().to_string()))
    };
    assert_eq!(
        s("postgres://db/app", None),
        (SslMode::Prefer, None),
        "libpq's default"
    );
    assert_eq!(
        s("postgres://db/app?sslmode=disable", None),
        (SslMode::Disable, None)
    );
    assert_eq!(
        s("postgres://db/app?sslmode=require", None),
        (SslMode::Require, None)
    );
    assert_eq!(
        s("postgres://db/app?sslmode=require", Some("/ca.pem")),
        (SslMode::VerifyCa, Some("/ca.pem".into())),
        "require with a root certificate verifies like verify-ca, as in libpq"
    );
    assert_eq!(
        s("postgres://db/app", Some("/ca.pem")),
        (SslMode::VerifyFull, Some("/ca.pem".into())),
        "a configured root without sslmode is not silently ignored"
    );
    assert_eq!(
        s(
            "postgres://db/app?sslmode=prefer&sslrootcert=/url.pem",
            Some("/cfg.pem")
        ),
        (SslMode::Prefer, Some("/cfg.pem".into())),
        "the config field wins over sslrootcert"
    );
    assert_eq!(
        s("host=db sslrootcert=system", None),
        (SslMode::VerifyFull, None),
        "sslrootcert=system: the bundled roots, verify-full"
    );
    assert_eq!(
        s("host=db sslmode=verify-ca sslrootcert=/u.pem", None),
        (SslMode::VerifyCa, Some("/u.pem".into()))
    );
}

#[test]
fn tokio_postgres_gets_the_nearest_mode() {
    use tokio_postgres::config::SslMode as Pg;
    let pg_mode = |url: &str| {
        SourceConfig {
            pg_url: url.into(),
            ..SourceConfig::default()
        }
        .pg_config()
        .unwrap()
        .get_ssl_mode()
    };
    assert_eq!(pg_mode("postgres://db/app?sslmode=verify-full"), Pg::Require);
    assert_eq!(pg_mode("postgres://db/app?sslmode=verify-ca"), Pg::Require);
    assert_eq!(pg_mode("postgres://db/app?sslmode=disable"), Pg::Disable);
    assert_eq!(pg_mode("postgres://db/app"), Pg::Prefer);
}

#[test]
fn replication_connection_gets_the_same_settings() {
    use pgwire_replication::SslMode as R;
    let t = settings("postgres://db/app?sslmode=verify-full", Some("/ca.pem"));
    let r = t.for_replication("db.example");
    assert_eq!(
        (r.mode, r.ca_pem_path.as_deref(), r.sni_hostname.as_deref()),
        (R::VerifyFull, Some(Path::new("/ca.pem")), None)
    );
    let r = t.for_replication("10.1.2.3");
    assert_eq!(
        r.sni_hostname.as_deref(),
        Some("10.1.2.3"),
        "an IP host is checked against the certificate's IP names"
    );
    for (url, mode) in [
        ("postgres://db/app?sslmode=disable", R::Disable),
        ("postgres://db/app", R::Prefer),
        ("postgres://db/app?sslmode=require", R::Require),
        ("postgres://db/app?sslmode=verify-ca", R::VerifyCa),
    ] {
        let r = settings(url, None).for_replication("127.0.0.1");
        assert_eq!(
            (r.mode, r.ca_pem_path, r.sni_hostname),
            (mode, None, None),
            "{url}"
        );
    }
}

#[test]
fn rustls_configs_build() {
    for mode in [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ] {
        let t = TlsSettings {
            mode,
            root_cert: None,
        };
        assert!(t.rustls_config().is_ok(), "{mode}");
    }
}

#[test]
fn a_bad_root_certificate_file_is_named() {
    let missing = TlsSettings {
        mode: SslMode::VerifyFull,
        root_cert: Some("/nonexistent/root.pem".into()),
    };
    let e = missing.rustls_config().unwrap_err().to_string();
    assert!(
        e.contains("/nonexistent/root.pem") && e.contains("ssl_root_cert"),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("outboxd-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let e = TlsSettings {
        mode: SslMode::VerifyCa,
        root_cert: Some(empty.clone()),
    }
    .rustls_config()
    .unwrap_err()
    .to_string();
    assert!(e.contains("no usable certificate"), "{e}");
    // Without verification, the root file is not needed (and not read).
    assert!(TlsSettings {
        mode: SslMode::Prefer,
        root_cert: Some("/nonexistent/root.pem".into()),
    }
    .rustls_config()
    .is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}
