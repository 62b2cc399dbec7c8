//! Rate limits per client address and per access token (`rate_limiting_window`,
//! `rate_limiting_nb_requests`): a token bucket of `nb_requests` that refills over the window.
//! Limits are per instance.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{ApiError, ApiResult};

/// The limiters of one instance.
#[derive(Debug)]
pub struct RateLimits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_token: DefaultKeyedRateLimiter<String>,
    sends_by_client: DefaultKeyedRateLimiter<IpAddr>,
    sends_by_recipient: DefaultKeyedRateLimiter<String>,
}

impl RateLimits {
    /// `requests` per `window_ms` for each client address and each token, and
    /// `sends_per_hour` validation messages per client address and per recipient.
    #[must_use]
    pub fn new(window_ms: u64, requests: u64, sends_per_hour: u64) -> Self {
        let requests = quota(window_ms, requests);
        let sends = quota(3_600_000, sends_per_hour);
        Self {
            by_address: RateLimiter::keyed(requests),
            by_token: RateLimiter::keyed(requests),
            sends_by_client: RateLimiter::keyed(sends),
            sends_by_recipient: RateLimiter::keyed(sends),
        }
    }

    /// Counts a validation message sent to `recipient` at the request of `client`.
    pub fn check_send(&self, client: IpAddr, recipient: &str) -> ApiResult<()> {
        let now = DefaultClock::default().now();
        self.sends_by_client.check_key(&client).map_err(|wait| limited(wait.wait_time_from(now)))?;
        self.sends_by_recipient.check_key(&recipient.to_owned()).map_err(|wait| limited(wait.wait_time_from(now)))
    }

    /// Counts a request from `address`.
    pub fn check_address(&self, address: IpAddr) -> ApiResult<()> {
        self.by_address.check_key(&address).map_err(|wait| limited(wait.wait_time_from(DefaultClock::default().now())))
    }

    /// Counts a request with the token whose digest is `token_hash`.
    pub fn check_token(&self, token_hash: &str) -> ApiResult<()> {
        self.by_token
            .check_key(&token_hash.to_owned())
            .map_err(|wait| limited(wait.wait_time_from(DefaultClock::default().now())))
    }

    /// Forgets clients whose buckets are full again, so memory does not grow without bound.
    pub fn forget_idle(&self) {
        self.by_address.retain_recent();
        self.by_token.retain_recent();
        self.sends_by_client.retain_recent();
        self.sends_by_recipient.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_token.shrink_to_fit();
    }
}

/// A bucket of `requests` refilled over `window_ms`.
fn quota(window_ms: u64, requests: u64) -> Quota {
    let burst = NonZeroU32::new(u32::try_from(requests).unwrap_or(u32::MAX).max(1)).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_millis((window_ms / u64::from(burst.get())).max(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
}

fn limited(wait: Duration) -> ApiError {
    crate::metrics::rate_limited();
    let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    ApiError::limit_exceeded(retry_after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrCode;

    #[test]
    fn the_bucket_holds_the_configured_number_of_requests() {
        let limits = RateLimits::new(600_000, 3, 2);
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limits.check_address(address).unwrap();
        }
        let error = limits.check_address(address).unwrap_err();
        assert_eq!(error.code(), ErrCode::LimitExceeded);
        limits.check_address("192.0.2.2".parse().unwrap()).expect("other clients are not affected");
        limits.check_token("t").unwrap();
        limits.check_send(address, "a@example.org").unwrap();
        limits.check_send(address, "b@example.org").unwrap();
        assert!(limits.check_send(address, "c@example.org").is_err(), "per client");
        limits.check_send("192.0.2.9".parse().unwrap(), "a@example.org").unwrap();
        assert!(limits.check_send("192.0.2.8".parse().unwrap(), "a@example.org").is_err(), "per recipient");
    }
}
