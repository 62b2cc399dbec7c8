//! The time the service goes by.
//!
//! Every expiry (access tokens, validation sessions and their tokens, invitations, job leases)
//! and every stored timestamp is read from one [`Clock`] held by the service, never from the
//! system directly, so that a test (or an application embedding the service) can move time
//! forward instead of waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Wall-clock time in milliseconds since the Unix epoch, plus an offset that only
/// [`Clock::advance`] changes (zero in production). Clones share the offset, so every part of
/// a service, and a second service built with a clone, see the same time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock, not moved.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        system_now_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and its clones) forward by `by`: what expires within `by` has expired.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(by, Ordering::Relaxed);
    }
}

fn system_now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together() {
        let clock = Clock::new();
        let clone = clock.clone();
        let before = clock.now_ms();
        clone.advance(Duration::from_secs(3600));
        assert!(clock.now_ms() >= before + 3_600_000);
        assert!(Clock::new().now_ms() < before + 3_600_000);
    }
}
