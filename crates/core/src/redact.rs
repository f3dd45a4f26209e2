//! Secret redaction, the one copy every stage prints through: URLs (`scheme://user:password@host/...`, with
//! the password raw or percent-encoded, containing any of `@ : / % ? #`), libpq conninfo strings
//! (`password=...`, quoted or not), query parameters named like secrets, and the names of configuration keys
//! that hold secrets. When in doubt it hides more, never less.

/// The mask put in place of a secret.
pub const MASK: &str = "***";

/// True for a configuration or query key that names a secret (`password`, `sasl.password`, `token`, ...).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credentials",
        "passphrase",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `text` with every password it holds replaced by [`MASK`]: the password of a URL's userinfo, the value of
/// a `password=` (or other secret-named) conninfo item, secret-named query parameters. Text that is neither
/// a URL nor a conninfo comes back unchanged.
pub fn redact_url(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains([' ', '=']) => {
            format!("{scheme}://{}", redact_after_scheme(rest))
        }
        _ => redact_conninfo(text),
    }
}

/// Everything after `scheme://`. Secret query parameters are masked first (their values may hold an `@`);
/// then the userinfo ends at the LAST `@` (a raw `@`, `/` or `:` in a password must not end it early), and
/// the user is what precedes the first `:` of the userinfo. An `@` elsewhere makes it hide too much, never
/// too little.
fn redact_after_scheme(rest: &str) -> String {
    let rest = match rest.split_once('?') {
        Some((before, query)) => format!("{before}?{}", redact_query(query)),
        None => rest.to_string(),
    };
    let Some((userinfo, after)) = rest.rsplit_once('@') else {
        return rest;
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}@{after}"),
        None => rest,
    }
}

/// `k=v&k=v`: the value of every secret-named key masked up to the next `&`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}={MASK}"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A libpq conninfo (`host=db password='a b' user=u`): secret-named values masked, quotes and escapes
/// followed as libpq does (`'...'` with `\'` and `\\`).
/// Copies the whitespace at the cursor.
fn copy_spaces(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, out: &mut String) {
    while let Some(&(_, c)) = chars.peek().filter(|(_, c)| c.is_whitespace()) {
        out.push(c);
        chars.next();
    }
}

fn redact_conninfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            out.push(c);
            chars.next();
            continue;
        }
        // A key, up to `=` or whitespace.
        let mut key_end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key_end = i + c.len_utf8();
            chars.next();
        }
        let key = &text[start..key_end];
        out.push_str(key);
        // Optional spaces, `=`, optional spaces, then the value.
        copy_spaces(&mut chars, &mut out);
        if chars.peek().map(|&(_, c)| c) != Some('=') {
            continue;
        }
        out.push('=');
        chars.next();
        copy_spaces(&mut chars, &mut out);
        let secret = is_secret_key(key);
        let mut value = String::new();
        if chars.peek().map(|&(_, c)| c) == Some('\'') {
            value.push('\'');
            chars.next();
            while let Some((_, c)) = chars.next() {
                value.push(c);
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push_str(if secret { MASK } else { &value });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords with every character that has broken a redactor: raw and percent-encoded.
    const NASTY: &[&str] = &[
        "p@ss",
        "p:ss",
        "p/ss",
        "p%40ss",
        "a@b:c/d%e",
        "x@@y",
        "q?r#s",
        "@",
        ":",
    ];

    #[test]
    fn url_passwords_are_hidden_whatever_they_contain() {
        for pw in NASTY {
            for (scheme, rest) in [
                ("postgres", "db:5432/app"),
                ("postgresql", "db/app?sslmode=require"),
                ("http", "registry:8081"),
                ("https", "registry:8081/path/"),
            ] {
                let url = format!("{scheme}://app:{pw}@{rest}");
                assert_eq!(redact_url(&url), format!("{scheme}://app:***@{rest}"), "{url}");
            }
        }
    }

    #[test]
    fn url_user_host_and_path_stay_visible() {
        assert_eq!(
            redact_url("postgres://app:a@b:c/d%e@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(redact_url("http://registry:8081"), "http://registry:8081");
        assert_eq!(
            redact_url("http://user@registry:8081"),
            "http://user@registry:8081"
        );
    }

    #[test]
    fn secret_query_parameters_are_hidden() {
        assert_eq!(
            redact_url("postgres://db/app?user=app&password=p@ss:w/d&sslmode=require"),
            "postgres://db/app?user=app&password=***&sslmode=require"
        );
    }

    #[test]
    fn conninfo_passwords_are_hidden_quoted_or_not() {
        assert_eq!(
            redact_url("host=db password=x user=u"),
            "host=db password=*** user=u"
        );
        assert_eq!(
            redact_url("host=db password = 'a b\\' c@d' user=u"),
            "host=db password = *** user=u"
        );
        for pw in NASTY {
            assert_eq!(
                redact_url(&format!("host=db user=u password={pw} dbname=app")),
                "host=db user=u password=*** dbname=app",
                "{pw:?}"
            );
        }
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(redact_url("db:5432"), "db:5432");
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "sasl.password",
            "ssl.key.password",
            "registry_password",
            "api_token",
            "SECRET",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["pg_url", "user", "sasl.username", "bootstrap_servers"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
