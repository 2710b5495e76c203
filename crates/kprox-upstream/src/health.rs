//! Endpoint health: an explicit state machine per endpoint, fed by active checks (`GET /readyz`
//! on the endpoint's own connections) and by what real requests experience (passive signals).
//! Selection (`balancer.rs`) only reads the resulting up/down flag, lock-free.
//!
//! ```text
//!   fall consecutive failures, one connection failure, or a draining answer
//!   Up ───────────────────────────────────────────────────────────▶ Down(ejected until T)
//!   ▲                                                                   │
//!   └──────── rise consecutive check successes, and now ≥ T ────────────┘
//! ```
//! Each ejection doubles the minimum time down (from `ejection_base` up to `ejection_max`);
//! staying up for `ejection_max` forgets earlier ejections.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Thresholds and timings of the health checks.
#[derive(Clone, Debug)]
pub struct HealthSettings {
    /// Time between active checks of one endpoint (±10% jitter).
    pub interval: Duration,
    /// An active check not answered within this is a failure.
    pub timeout: Duration,
    /// Consecutive failures that take an endpoint out.
    pub fall: u32,
    /// Consecutive successful checks that bring it back.
    pub rise: u32,
    /// Minimum time out after a first ejection; doubles with each further ejection.
    pub ejection_base: Duration,
    /// Cap of the time out.
    pub ejection_max: Duration,
}

impl From<&kprox_config::UpstreamConfig> for HealthSettings {
    fn from(config: &kprox_config::UpstreamConfig) -> Self {
        Self {
            interval: config.health_check_interval.get(),
            timeout: config.health_check_timeout.get(),
            fall: config.health_fall,
            rise: config.health_rise,
            ejection_base: config.ejection_base.get(),
            ejection_max: config.ejection_max.get(),
        }
    }
}

/// A signal about an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// An active check succeeded.
    CheckPassed,
    /// An active check failed or timed out.
    CheckFailed,
    /// A request got a response that is not a server error.
    RequestOk,
    /// A request got a 5xx.
    ServerError,
    /// A connection could not be made (refused, reset, TLS, timeout): taken out at once.
    ConnectFailed,
    /// The apiserver said it is shutting down (429 with `Connection: close`): taken out at
    /// once; requests in flight on it finish.
    Draining,
}

/// The externally visible state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
}

/// Consecutive 5xx answers from real requests that take an endpoint out (Envoy's outlier
/// detection default): one 503 from an overloaded aggregated API must not eject an apiserver.
pub const CONSECUTIVE_SERVER_ERRORS: u32 = 5;

#[derive(Debug)]
struct Machine {
    state: State,
    consecutive_failures: u32,
    consecutive_server_errors: u32,
    consecutive_passes: u32,
    ejections: u32,
    ejected_until: Instant,
    up_since: Instant,
}

/// One endpoint's health: the machine behind a mutex and the up/down flag the request path
/// reads without locking. A request answered by an endpoint in the steady state (up, no
/// failure counted, no ejection to forgive) changes nothing, so it takes no lock either.
#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    /// The machine is up with every counter at zero: a success would change nothing.
    steady: AtomicBool,
    /// Ejections ever (never forgiven), for metrics.
    ejections_total: std::sync::atomic::AtomicU64,
    passed: std::sync::atomic::AtomicU64,
    machine: Mutex<Machine>,
    settings: HealthSettings,
}

impl Health {
    /// A new endpoint starts up: traffic may flow before the first check completes.
    pub fn new(settings: HealthSettings) -> Self {
        let now = Instant::now();
        Self {
            up: AtomicBool::new(true),
            steady: AtomicBool::new(true),
            ejections_total: std::sync::atomic::AtomicU64::new(0),
            passed: std::sync::atomic::AtomicU64::new(0),
            machine: Mutex::new(Machine {
                state: State::Up,
                consecutive_failures: 0,
                consecutive_server_errors: 0,
                consecutive_passes: 0,
                ejections: 0,
                ejected_until: now,
                up_since: now,
            }),
            settings,
        }
    }

    /// Whether the endpoint should get traffic.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Active checks passed since start.
    pub fn passed_checks(&self) -> u64 {
        self.passed.load(Ordering::Relaxed)
    }

    /// Times taken out since start.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Relaxed)
    }

    /// Times taken out so far (without being forgiven).
    #[cfg(test)]
    fn ejections(&self) -> u32 {
        self.lock().ejections
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a signal; returns the new state when it changed.
    pub fn record(&self, signal: Signal) -> Option<State> {
        if signal == Signal::CheckPassed {
            self.passed.fetch_add(1, Ordering::Relaxed);
        }
        // The request path's common case. A failure recorded concurrently is simply ordered
        // after this success, as it could have been anyway.
        if matches!(signal, Signal::RequestOk | Signal::CheckPassed)
            && self.steady.load(Ordering::Acquire)
        {
            return None;
        }
        let now = Instant::now();
        let mut m = self.lock();
        let before = m.state;
        match (m.state, signal) {
            (State::Up, Signal::CheckPassed | Signal::RequestOk) => {
                m.consecutive_failures = 0;
                m.consecutive_server_errors = 0;
                if m.ejections > 0 && now.duration_since(m.up_since) >= self.settings.ejection_max {
                    m.ejections = 0;
                }
            }
            (State::Up, Signal::CheckFailed) => {
                m.consecutive_failures += 1;
                if m.consecutive_failures >= self.settings.fall {
                    self.eject(&mut m, now);
                }
            }
            (State::Up, Signal::ServerError) => {
                m.consecutive_server_errors += 1;
                if m.consecutive_server_errors >= CONSECUTIVE_SERVER_ERRORS {
                    self.eject(&mut m, now);
                }
            }
            (State::Up, Signal::ConnectFailed | Signal::Draining) => self.eject(&mut m, now),
            (State::Down, Signal::CheckPassed) => {
                m.consecutive_passes += 1;
                if m.consecutive_passes >= self.settings.rise && now >= m.ejected_until {
                    m.state = State::Up;
                    m.consecutive_failures = 0;
                    m.up_since = now;
                }
            }
            (
                State::Down,
                Signal::CheckFailed
                | Signal::ConnectFailed
                | Signal::ServerError
                | Signal::Draining,
            ) => m.consecutive_passes = 0,
            // While down, only active checks bring an endpoint back: a lucky request in panic
            // mode is not evidence enough.
            (State::Down, Signal::RequestOk) => {}
        }
        self.up.store(m.state == State::Up, Ordering::Relaxed);
        self.steady.store(
            m.state == State::Up
                && m.consecutive_failures == 0
                && m.consecutive_server_errors == 0
                && m.ejections == 0,
            Ordering::Release,
        );
        (m.state != before).then_some(m.state)
    }

    fn eject(&self, m: &mut Machine, now: Instant) {
        m.state = State::Down;
        m.consecutive_passes = 0;
        m.consecutive_failures = 0;
        m.consecutive_server_errors = 0;
        let factor = 1u32 << m.ejections.min(16);
        let time_out = self
            .settings
            .ejection_base
            .saturating_mul(factor)
            .min(self.settings.ejection_max);
        m.ejections += 1;
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        m.ejected_until = now + time_out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HealthSettings {
        HealthSettings {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            fall: 2,
            rise: 2,
            ejection_base: Duration::from_secs(1),
            ejection_max: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fall_failures_take_it_out_and_rise_passes_bring_it_back_after_the_ejection() {
        let health = Health::new(settings());
        assert!(health.is_up());
        assert_eq!(health.record(Signal::CheckFailed), None);
        assert_eq!(health.record(Signal::CheckFailed), Some(State::Down));
        assert!(!health.is_up());
        health.record(Signal::CheckPassed);
        assert_eq!(
            health.record(Signal::CheckPassed),
            None,
            "still inside the ejection time"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(health.record(Signal::CheckPassed), Some(State::Up));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_failure_takes_it_out_at_once() {
        let health = Health::new(settings());
        assert_eq!(health.record(Signal::ConnectFailed), Some(State::Down));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_between_failures_resets_the_count() {
        let health = Health::new(settings());
        health.record(Signal::CheckFailed);
        health.record(Signal::RequestOk);
        assert_eq!(health.record(Signal::CheckFailed), None);
        assert!(health.is_up());
        for _ in 1..CONSECUTIVE_SERVER_ERRORS {
            assert_eq!(health.record(Signal::ServerError), None);
        }
        assert_eq!(health.record(Signal::ServerError), Some(State::Down));
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_ejections_back_off_exponentially_and_are_forgiven() {
        let health = Health::new(settings());
        let flap = |expected_out: u64| {
            let health = &health;
            async move {
                health.record(Signal::ConnectFailed);
                health.record(Signal::CheckPassed);
                health.record(Signal::CheckPassed);
                tokio::time::advance(Duration::from_millis(expected_out * 1000 - 1)).await;
                assert!(
                    !health.is_up(),
                    "back too early (expected {expected_out}s out)"
                );
                tokio::time::advance(Duration::from_millis(1)).await;
                health.record(Signal::CheckPassed);
                assert!(health.is_up(), "not back after {expected_out}s");
            }
        };
        flap(1).await;
        flap(2).await;
        flap(4).await;
        assert_eq!(health.ejections(), 3);
        tokio::time::advance(Duration::from_secs(30)).await;
        health.record(Signal::RequestOk);
        assert_eq!(health.ejections(), 0, "a long healthy spell forgives");
    }

    #[test]
    fn a_success_in_the_steady_state_takes_no_lock_and_a_failure_ends_the_steady_state() {
        let health = std::sync::Arc::new(Health::new(settings()));
        let held = health.lock();
        let (done, finished) = std::sync::mpsc::channel();
        let recorder = health.clone();
        std::thread::spawn(move || {
            let _ = done.send(recorder.record(Signal::RequestOk));
        });
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(5)),
            Ok(None),
            "a success while steady waited for the machine's lock"
        );
        drop(held);
        health.record(Signal::CheckFailed);
        assert!(!health.steady.load(Ordering::Acquire));
        health.record(Signal::RequestOk);
        assert!(
            health.steady.load(Ordering::Acquire),
            "the success reset the count"
        );
        assert_eq!(
            health.record(Signal::CheckFailed),
            None,
            "one failure again, not two"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_panic_mode_do_not_revive_an_endpoint() {
        let health = Health::new(settings());
        health.record(Signal::ConnectFailed);
        tokio::time::advance(Duration::from_secs(5)).await;
        health.record(Signal::RequestOk);
        assert!(!health.is_up());
    }
}
