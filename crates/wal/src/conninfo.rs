//! Takes the TLS parameters (`sslmode`, `sslrootcert`) out of `pg_url`, in both of libpq's forms (URL and
//! `key=value` conninfo), so that the rest can go to tokio-postgres, which knows only `disable`, `prefer` and
//! `require` and no `sslrootcert`. Pure string work.

use crate::tls::{SslMode, UrlTls};
use crate::WalError;

/// `pg_url` without its TLS parameters, and those parameters.
pub(crate) fn split_tls_params(pg_url: &str) -> Result<(String, UrlTls), WalError> {
    let mut tls = UrlTls::default();
    let mut take = |key: &str, value: &str| -> Result<bool, WalError> {
        match key {
            "sslmode" => tls.mode = Some(SslMode::parse(value)?),
            "sslrootcert" => tls.root_cert = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if pg_url.starts_with("postgres://") || pg_url.starts_with("postgresql://") {
        let Some((base, query)) = pg_url.split_once('?') else {
            return Ok((pg_url.to_string(), tls));
        };
        let mut kept = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            if !take(&percent_decode(key), &percent_decode(value))? {
                kept.push(param);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for (key, value) in conninfo_pairs(pg_url)? {
            if !take(&key, &value)? {
                kept.push(format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                ));
            }
        }
        kept.join(" ")
    };
    Ok((rest, tls))
}

/// `%XX` sequences decoded (a malformed one is kept as is).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `key = value` pairs of a libpq conninfo string; values may be single-quoted, backslash escapes
/// `\'` and `\\` as in libpq.
fn conninfo_pairs(s: &str) -> Result<Vec<(String, String)>, WalError> {
    let bad = |why: &str| WalError::Config(format!("source.pg_url is not a valid URL or conninfo: {why}"));
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("expected '=' after {key:?}")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(bad(&format!("unterminated quoted value of {key:?}"))),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, UrlTls) {
        split_tls_params(url).unwrap()
    }

    #[test]
    fn url_form() {
        let (rest, tls) = split("postgres://u:p%3Fw@db:5433/app?sslmode=verify-full&connect_timeout=3");
        assert_eq!(rest, "postgres://u:p%3Fw@db:5433/app?connect_timeout=3");
        assert_eq!(tls.mode, Some(SslMode::VerifyFull));
        let (rest, tls) = split("postgresql://db/app?sslrootcert=%2Fetc%2Fca%20x.pem&sslmode=verify-ca");
        assert_eq!(rest, "postgresql://db/app");
        assert_eq!(
            (tls.mode, tls.root_cert.as_deref()),
            (Some(SslMode::VerifyCa), Some("/etc/ca x.pem"))
        );
        let (rest, tls) = split("postgres://db/app");
        assert_eq!((rest.as_str(), tls), ("postgres://db/app", UrlTls::default()));
        assert_eq!(
            split("postgres://db/app?sslmode=allow").1.mode,
            Some(SslMode::Prefer)
        );
        assert!(rest.parse::<tokio_postgres::Config>().is_ok());
    }

    #[test]
    fn conninfo_form() {
        let (rest, tls) = split(r"host=db  user = app password='s\'x' sslmode = require sslrootcert=/ca.pem");
        assert_eq!(
            (tls.mode, tls.root_cert.as_deref()),
            (Some(SslMode::Require), Some("/ca.pem"))
        );
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_user(), Some("app"));
        assert_eq!(pg.get_password(), Some(&b"s'x"[..]));
        let (rest, _) = split(r"password='a b\'c\\d' dbname=x");
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&br"a b'c\d"[..]));
        assert_eq!(pg.get_dbname(), Some("x"));
    }

    #[test]
    fn rejects_what_libpq_rejects() {
        let e = split_tls_params("postgres://db/app?sslmode=verify")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sslmode=\"verify\"") && e.contains("verify-full"),
            "{e}"
        );
        assert!(split_tls_params("host=db sslmode=bogus").is_err());
        assert!(split_tls_params("host=db password='open").is_err());
        assert!(split_tls_params("host db").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
