//! Exponential backoff with jitter, and a pause that ends early on stop.

use crate::config::RetryConfig;
use std::time::Duration;
use tokio::sync::watch;

/// The pause before attempt `attempt + 1` (`attempt` >= 1): `initial * 2^(attempt-1)`, at most `max`, with
/// up to 20 % taken off at random so that partitions failing together do not retry in lockstep.
pub(crate) fn delay(retry: &RetryConfig, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ms = retry
        .initial_backoff_ms
        .saturating_mul(1u64 << exp)
        .min(retry.max_backoff_ms.max(retry.initial_backoff_ms));
    let jitter = rand::random::<f64>() * 0.2;
    Duration::from_millis((ms as f64 * (1.0 - jitter)) as u64)
}

/// Sleeps `d`, or less when `stop` turns true. Returns false when stopped.
pub(crate) async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_bound() {
        let r = RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        let ms = |a| delay(&r, a).as_millis() as u64;
        assert!((80..=100).contains(&ms(1)), "{}", ms(1));
        assert!((160..=200).contains(&ms(2)), "{}", ms(2));
        assert!((320..=400).contains(&ms(3)), "{}", ms(3));
        assert!((800..=1_000).contains(&ms(9)), "{}", ms(9));
        assert!((800..=1_000).contains(&ms(40)), "{}", ms(40));
    }
}
