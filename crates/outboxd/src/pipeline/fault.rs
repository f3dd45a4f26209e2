//! Fault injection for the crash tests. Compiled in always, inert unless configured:
//!
//! `OUTBOXD_FAULT=<point>:<when>[,<point>:<when>...]` makes the process call `std::process::abort()` (no
//! unwinding, no clean-up: like `kill -9`) at that point:
//! - `crash_before_commit`: the Kafka transaction is complete, its records (checkpoint excepted) flushed to
//!   the broker, but not committed (the next start's `init_transactions` must abort them);
//! - `crash_after_commit`: the Kafka transaction is committed, its end LSN NOT yet confirmed to Postgres;
//! - `crash_mid_txn`: right after an event was produced, inside a Postgres transaction.
//!
//! `<when>` is an integer N (the N-th time the point is reached in this process, counting from 1) or a
//! probability with a decimal point (`0.05`: each time, with that chance). `1` means "the first time",
//! `1.0` means "every time".
//!
//! In-process tests use [`FaultPlan::stop_at`] instead: at the point the pipeline stops at once, dropping
//! the replication connection WITHOUT confirming what it just committed, and returns
//! [`crate::StopReason::Fault`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// Before `commit_transaction` of a complete Kafka transaction.
    BeforeCommit,
    /// After `commit_transaction` returned, before the end LSN is confirmed to Postgres.
    AfterCommit,
    /// After an event was produced into the open transaction.
    MidTxn,
}

impl FaultPoint {
    /// The name used in `OUTBOXD_FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::BeforeCommit => "crash_before_commit",
            FaultPoint::AfterCommit => "crash_after_commit",
            FaultPoint::MidTxn => "crash_mid_txn",
        }
    }

    fn parse(name: &str) -> Option<FaultPoint> {
        [
            FaultPoint::BeforeCommit,
            FaultPoint::AfterCommit,
            FaultPoint::MidTxn,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// When a rule fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    /// The N-th time the point is reached (from 1), once.
    Nth(u64),
    /// Each time, with this probability.
    Probability(f64),
}

/// What happens when a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// `std::process::abort()`.
    Abort,
    /// Stop the pipeline at once, confirming nothing more (in-process tests).
    Stop,
}

#[derive(Debug)]
struct Rule {
    point: FaultPoint,
    trigger: Trigger,
    action: FaultAction,
    hits: AtomicU64,
}

/// The faults to inject (none by default).
#[derive(Debug, Default)]
pub struct FaultPlan {
    rules: Vec<Rule>,
}

impl FaultPlan {
    /// The environment variable read by [`FaultPlan::from_env`].
    pub const ENV: &'static str = "OUTBOXD_FAULT";

    /// No faults.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// The plan in `OUTBOXD_FAULT` (none when unset or empty).
    pub fn from_env() -> Result<FaultPlan, String> {
        match std::env::var(Self::ENV) {
            Ok(spec) => FaultPlan::parse(&spec),
            Err(_) => Ok(FaultPlan::none()),
        }
    }

    /// Parses `<point>:<when>[,...]`; every rule aborts the process.
    pub fn parse(spec: &str) -> Result<FaultPlan, String> {
        let mut rules = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, when) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: expected <point>:<when>"))?;
            let point = FaultPoint::parse(name.trim()).ok_or_else(|| {
                format!(
                    "unknown point {name:?}: use crash_before_commit, crash_after_commit or crash_mid_txn"
                )
            })?;
            let when = when.trim();
            let trigger = if when.contains('.') {
                match when.parse::<f64>() {
                    Ok(p) if p > 0.0 && p <= 1.0 => Trigger::Probability(p),
                    _ => return Err(format!("{part:?}: a probability must lie in (0, 1]")),
                }
            } else {
                match when.parse::<u64>() {
                    Ok(n) if n >= 1 => Trigger::Nth(n),
                    _ => {
                        return Err(format!(
                            "{part:?}: expected a count from 1, or a probability like 0.1"
                        ))
                    }
                }
            };
            rules.push(Rule {
                point,
                trigger,
                action: FaultAction::Abort,
                hits: AtomicU64::new(0),
            });
        }
        Ok(FaultPlan { rules })
    }

    /// For in-process tests: stop the pipeline (no abort) the `nth` time `point` is reached.
    pub fn stop_at(point: FaultPoint, nth: u64) -> FaultPlan {
        let rule = Rule {
            point,
            trigger: Trigger::Nth(nth.max(1)),
            action: FaultAction::Stop,
            hits: AtomicU64::new(0),
        };
        FaultPlan { rules: vec![rule] }
    }

    /// True when a rule watches `point`.
    pub fn watches(&self, point: FaultPoint) -> bool {
        self.rules.iter().any(|r| r.point == point)
    }

    /// True when no fault is planned.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Called at each point: aborts the process, or returns [`FaultAction::Stop`], when a rule fires.
    pub(crate) fn hit(&self, point: FaultPoint) -> Option<FaultAction> {
        for rule in self.rules.iter().filter(|r| r.point == point) {
            let n = rule.hits.fetch_add(1, Ordering::Relaxed) + 1;
            let fires = match rule.trigger {
                Trigger::Nth(k) => n == k,
                Trigger::Probability(p) => rand::random::<f64>() < p,
            };
            if fires {
                match rule.action {
                    FaultAction::Abort => {
                        eprintln!(
                            "outboxd: OUTBOXD_FAULT {} fired (hit {n}): aborting the process",
                            point.name()
                        );
                        std::process::abort();
                    }
                    FaultAction::Stop => {
                        tracing::warn!(
                            point = point.name(),
                            hit = n,
                            "injected fault: stopping without confirming"
                        );
                        return Some(FaultAction::Stop);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_probabilities() {
        let plan = FaultPlan::parse("crash_after_commit:3, crash_mid_txn:0.25").unwrap();
        assert_eq!(plan.rules.len(), 2);
        assert_eq!(
            (plan.rules[0].point, plan.rules[0].trigger),
            (FaultPoint::AfterCommit, Trigger::Nth(3))
        );
        assert_eq!(
            (plan.rules[1].point, plan.rules[1].trigger),
            (FaultPoint::MidTxn, Trigger::Probability(0.25))
        );
        assert!(FaultPlan::parse("").unwrap().is_empty());
        assert!(FaultPlan::parse("crash_after_commit")
            .unwrap_err()
            .contains("<point>:<when>"));
        assert!(FaultPlan::parse("crash_later:1")
            .unwrap_err()
            .contains("unknown point"));
        assert!(FaultPlan::parse("crash_mid_txn:0")
            .unwrap_err()
            .contains("count from 1"));
        assert!(FaultPlan::parse("crash_mid_txn:1.5")
            .unwrap_err()
            .contains("(0, 1]"));
    }

    #[test]
    fn stop_fires_once_at_the_nth_hit() {
        let plan = FaultPlan::stop_at(FaultPoint::AfterCommit, 2);
        assert_eq!(
            plan.hit(FaultPoint::BeforeCommit),
            None,
            "other points do not count"
        );
        assert_eq!(plan.hit(FaultPoint::AfterCommit), None);
        assert_eq!(plan.hit(FaultPoint::AfterCommit), Some(FaultAction::Stop));
        assert_eq!(plan.hit(FaultPoint::AfterCommit), None);
        assert_eq!(FaultPlan::none().hit(FaultPoint::MidTxn), None);
    }
}
