//! Asserting on preflight reports: find a check by name, print the whole report when an assertion fails.

use outboxd_wal::admin::{Check, CheckStatus};

/// The whole report, one check per line (with its fix).
pub fn report(checks: &[Check]) -> String {
    checks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The check named `name`; panics listing all checks when absent.
pub fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in\n{}", report(checks)))
}

/// Asserts the named check has `status` and that its detail and fix mention the given texts.
pub fn assert_check(checks: &[Check], name: &str, status: CheckStatus, detail: &[&str], fix: &[&str]) {
    let c = find(checks, name);
    let all = report(checks);
    assert_eq!(c.status, status, "{name}:\n{all}");
    for d in detail {
        assert!(c.detail.contains(d), "{name} detail lacks {d:?}:\n{all}");
    }
    let fix_text = c.fix.as_deref().unwrap_or_default();
    for f in fix {
        assert!(fix_text.contains(f), "{name} fix lacks {f:?}:\n{all}");
    }
}
