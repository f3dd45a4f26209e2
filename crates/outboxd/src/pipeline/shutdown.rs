//! The caller's shutdown future, made pollable many times: once it has resolved, it stays resolved.

use std::future::Future;
use std::pin::Pin;

/// A latch over the shutdown future.
pub(crate) struct Shutdown<'a> {
    fut: Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>,
    fired: bool,
}

impl<'a> Shutdown<'a> {
    pub(crate) fn new(fut: Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>) -> Self {
        Shutdown { fut, fired: false }
    }

    /// Resolves when shutdown is requested (at once if it already was). Cancel-safe.
    pub(crate) async fn wait(&mut self) {
        if !self.fired {
            self.fut.as_mut().await;
            self.fired = true;
        }
    }

    /// Looks, without waiting, whether shutdown was requested (for loops that do not pass through an
    /// `await` on [`Shutdown::wait`] for a while).
    pub(crate) fn requested(&mut self) -> bool {
        if !self.fired {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            self.fired = self.fut.as_mut().poll(&mut cx).is_ready();
        }
        self.fired
    }

    /// True once shutdown was requested and seen.
    pub(crate) fn fired(&self) -> bool {
        self.fired
    }
}

impl std::fmt::Debug for Shutdown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("fired", &self.fired)
            .finish_non_exhaustive()
    }
}
