//! How long to wait before the next connection attempt: Fibonacci seconds (1, 2, 3, 5, 8, ...)
//! up to a cap, with jitter from a random number the caller passes in, and a longer, separate
//! schedule after authentication failures so a bad key cannot cause a reconnect storm.
//! Time and randomness are arguments: the policy never reads a clock or an RNG.

use core::time::Duration;

use crate::time::Instant;

/// The knobs of [`Backoff`].
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// The longest wait after a connection failure (default 60 s).
    pub cap: Duration,
    /// The unit of the Fibonacci schedule (default 1 s; tests shrink it).
    pub unit: Duration,
    /// How much of a wait jitter may take off, from 0.0 (none) to 1.0 (all); default 0.2.
    /// Taking off rather than adding keeps every wait within the cap while spreading a fleet
    /// that lost the broker at the same moment.
    pub jitter: f64,
    /// A connection that lasted this long resets the schedule (default 30 s). A connection that
    /// drops sooner does not, so a broker that accepts and then drops cannot cause a storm.
    pub stable_after: Duration,
    /// The first wait after an authentication failure (default 60 s); it doubles with each
    /// further one.
    pub auth_failure_wait: Duration,
    /// The longest wait after authentication failures (default 15 minutes).
    pub auth_failure_cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            cap: Duration::from_secs(60),
            unit: Duration::from_secs(1),
            jitter: 0.2,
            stable_after: Duration::from_secs(30),
            auth_failure_wait: Duration::from_secs(60),
            auth_failure_cap: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a connection attempt failed or a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Could not connect, or the connection was lost: network, refusal, timeout.
    Connection,
    /// The cloud refused the credentials. Retrying soon cannot help.
    Auth,
}

/// The reconnect schedule of one connection.
///
/// ```
/// use core::time::Duration;
/// use mode_core::backoff::{Backoff, BackoffPolicy, Failure};
/// use mode_core::time::Instant;
///
/// let mut backoff = Backoff::new(BackoffPolicy { jitter: 0.0, ..BackoffPolicy::default() });
/// let now = Instant::from_millis(0); // the caller's clock: the schedule never reads one
/// let waits: Vec<u64> = (0..6)
///     .map(|_| backoff.on_failure(Failure::Connection, now, 0.5).as_secs())
///     .collect();
/// assert_eq!(waits, [1, 2, 3, 5, 8, 13]); // Fibonacci seconds, up to the 60 s cap
/// // A refused API key waits far longer: retrying it soon cannot help.
/// assert!(backoff.on_failure(Failure::Auth, now, 0.5) >= Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    auth_failures: u32,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A schedule with `policy`, before any failure.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
            auth_failures: 0,
            connected_at: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Consecutive connection failures counted so far (reset by a stable connection).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records that a connection was established (and accepted) at `now`. Accepted credentials
    /// end the authentication-failure schedule at once; the ordinary schedule resets only once
    /// the connection has proved stable.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
        self.auth_failures = 0;
    }

    /// Records a failed attempt or a lost connection at `now` and returns how long to wait before
    /// the next attempt. `random` is a number in `[0, 1)` from the caller's RNG (values outside
    /// are clamped); pass 0.0 for no jitter.
    pub fn on_failure(&mut self, failure: Failure, now: Instant, random: f64) -> Duration {
        if let Some(since) = self.connected_at.take()
            && now.saturating_duration_since(since) >= self.policy.stable_after
        {
            self.failures = 0;
        }
        // The two schedules are apart: refused credentials say nothing of the network, so they
        // do not push the next connection failure further up the Fibonacci schedule.
        let wait = match failure {
            Failure::Connection => {
                self.failures = self.failures.saturating_add(1);
                fibonacci(self.failures, self.policy.unit, self.policy.cap)
            }
            Failure::Auth => {
                self.auth_failures = self.auth_failures.saturating_add(1);
                let doublings = (self.auth_failures - 1).min(31);
                self.policy
                    .auth_failure_wait
                    .saturating_mul(1 << doublings)
                    .min(self.policy.auth_failure_cap)
            }
        };
        let jitter = self.policy.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        wait.mul_f64(1.0 - jitter)
    }

    /// Forgets every failure, as after a stable connection.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.auth_failures = 0;
        self.connected_at = None;
    }
}

/// The `n`-th wait of the schedule 1, 2, 3, 5, 8, ... units (n from 1), no more than `cap`.
fn fibonacci(n: u32, unit: Duration, cap: Duration) -> Duration {
    let (mut a, mut b) = (1u64, 2u64);
    for _ in 1..n {
        (a, b) = (b, a.saturating_add(b));
        if unit.saturating_mul(a.min(u32::MAX as u64) as u32) >= cap {
            return cap;
        }
    }
    unit.saturating_mul(a.min(u32::MAX as u64) as u32).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    fn no_jitter() -> BackoffPolicy {
        BackoffPolicy {
            jitter: 0.0,
            ..BackoffPolicy::default()
        }
    }

    fn secs(waits: &[Duration]) -> Vec<u64> {
        waits.iter().map(Duration::as_secs).collect()
    }

    /// A schedule without jitter after `failures`, all at time 0.
    fn after(failures: &[Failure]) -> Backoff {
        let mut backoff = Backoff::new(no_jitter());
        for &failure in failures {
            backoff.on_failure(failure, Instant::from_millis(0), 0.0);
        }
        backoff
    }

    /// The first `count` waits of a fresh schedule after repeated `failure`s at one time
    /// (nothing stable in between), with `random` as the jitter's draw.
    fn waits(policy: BackoffPolicy, failure: Failure, count: usize, random: f64) -> Vec<Duration> {
        let mut backoff = Backoff::new(policy);
        let now = Instant::from_millis(0);
        (0..count)
            .map(|_| backoff.on_failure(failure, now, random))
            .collect()
    }

    #[test]
    fn connection_failures_wait_fibonacci_seconds_up_to_the_cap() {
        let waits = waits(no_jitter(), Failure::Connection, 12, 0.5);
        assert_eq!(secs(&waits), [1, 2, 3, 5, 8, 13, 21, 34, 55, 60, 60, 60]);
    }

    #[test]
    fn the_schedule_never_overflows_after_very_many_failures() {
        let mut backoff = Backoff::new(no_jitter());
        let now = Instant::from_millis(0);
        for _ in 0..10_000 {
            assert!(backoff.on_failure(Failure::Connection, now, 0.0) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn jitter_only_shortens_a_wait_and_by_no_more_than_its_share() {
        let mut backoff = Backoff::new(BackoffPolicy::default());
        let now = Instant::from_millis(0);
        for _ in 0..9 {
            backoff.on_failure(Failure::Connection, now, 0.0);
        }
        // The 10th wait is the 60 s cap; jitter 0.2 with the largest random takes off 20 %.
        let wait = backoff.on_failure(Failure::Connection, now, 0.999_999);
        assert!(
            wait > Duration::from_secs(48) && wait < Duration::from_secs(60),
            "{wait:?}"
        );
        let wait = backoff.on_failure(Failure::Connection, now, 7.0); // clamped to 1.0
        assert_eq!(wait, Duration::from_secs(48));
    }

    #[test]
    fn a_stable_connection_resets_the_schedule() {
        let mut backoff = after(&[Failure::Connection; 5]);
        let t0 = Instant::from_millis(0);
        backoff.on_connected(t0);
        let wait = backoff.on_failure(Failure::Connection, t0 + Duration::from_secs(31), 0.0);
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn a_connection_that_drops_quickly_keeps_the_schedule_growing() {
        let mut backoff = Backoff::new(no_jitter());
        let t0 = Instant::from_millis(0);
        let mut waits = Vec::new();
        for i in 0..5 {
            let t = t0 + Duration::from_secs(i);
            backoff.on_connected(t);
            waits.push(backoff.on_failure(
                Failure::Connection,
                t + Duration::from_millis(100),
                0.0,
            ));
        }
        assert_eq!(secs(&waits), [1, 2, 3, 5, 8]);
    }

    #[test]
    fn authentication_failures_wait_longer_and_double_up_to_their_cap() {
        let waits = waits(no_jitter(), Failure::Auth, 7, 0.0);
        assert_eq!(secs(&waits), [60, 120, 240, 480, 900, 900, 900]);
    }

    #[test]
    fn accepted_credentials_end_the_authentication_schedule() {
        let mut backoff = after(&[Failure::Auth; 2]);
        let now = Instant::from_millis(0);
        backoff.on_connected(now);
        assert_eq!(
            backoff.on_failure(Failure::Auth, now, 0.0),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn authentication_failures_do_not_advance_the_connection_schedule() {
        let mut backoff = after(&[Failure::Auth; 2]);
        assert_eq!(
            backoff.on_failure(Failure::Connection, Instant::from_millis(0), 0.0),
            Duration::from_secs(1)
        );
        assert_eq!(backoff.failures(), 1);
    }

    #[test]
    fn the_unit_scales_the_schedule_for_fast_tests() {
        let policy = BackoffPolicy {
            unit: Duration::from_millis(10),
            cap: Duration::from_millis(45),
            ..no_jitter()
        };
        let waits: Vec<_> = waits(policy, Failure::Connection, 5, 0.0)
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(waits, [10, 20, 30, 45, 45]);
    }
}
