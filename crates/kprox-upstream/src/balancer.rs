//! Choosing an endpoint: the policies, over the endpoints health says are up (or, when none is,
//! over all of them: panic mode). Reads only atomics; never blocks.
//!
//! - `round-robin`: each in turn.
//! - `least-request`: two endpoints drawn at random, the one with the lower cost wins; cost is the
//!   peak-EWMA latency times (requests in flight + 1). A watch stops counting as in flight once
//!   its response has started, so long watches do not make an endpoint look busy.
//! - `failover`: the first in configured order (a preferred endpoint first), like k3s's
//!   active/standby.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How endpoints are chosen: the configuration's type, taken as it is.
pub use kprox_config::Policy;

/// Decay time of the latency average.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Latency assumed before the first measurement.
const INITIAL_LATENCY_NANOS: u64 = 1_000_000;

/// The load of one endpoint.
#[derive(Debug)]
pub struct Load {
    in_flight: AtomicUsize,
    /// Peak-EWMA of time to response headers, in nanoseconds.
    ewma_nanos: AtomicU64,
    /// When the average was last updated, in nanoseconds since `epoch`.
    updated_nanos: AtomicU64,
    epoch: Instant,
    requests: AtomicU64,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            ewma_nanos: AtomicU64::new(INITIAL_LATENCY_NANOS),
            updated_nanos: AtomicU64::new(0),
            epoch: Instant::now(),
            requests: AtomicU64::new(0),
        }
    }
}

impl Load {
    /// Counts a request as in flight until the guard is released or dropped.
    pub fn start(self: &Arc<Self>) -> LoadGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        LoadGuard {
            load: Some(self.clone()),
            started: Instant::now(),
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The latency average.
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.ewma_nanos.load(Ordering::Relaxed))
    }

    fn observe(&self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let previous = self.ewma_nanos.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(self.updated_nanos.swap(now, Ordering::Relaxed));
        let next = if sample > previous {
            // Peak: a slow answer counts at once.
            sample
        } else {
            let weight = (-(elapsed as f64) / EWMA_DECAY.as_nanos() as f64).exp();
            (previous as f64 * weight + sample as f64 * (1.0 - weight)) as u64
        };
        self.ewma_nanos.store(next, Ordering::Relaxed);
    }

    fn cost(&self) -> f64 {
        self.ewma_nanos.load(Ordering::Relaxed) as f64 * (self.in_flight() as f64 + 1.0)
    }
}

/// One request's share of an endpoint's load.
#[derive(Debug)]
pub struct LoadGuard {
    load: Option<Arc<Load>>,
    started: Instant,
}

impl LoadGuard {
    /// Records the time to response headers.
    pub fn headers_arrived(&self) {
        if let Some(load) = &self.load {
            load.observe(self.started.elapsed());
        }
    }

    /// Stops counting the request as load (a watch, once its response started).
    pub fn release(&mut self) {
        if let Some(load) = self.load.take() {
            load.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.release();
    }
}

/// Endpoints a request's order holds without allocating; more spill to the heap.
pub const INLINE_ENDPOINTS: usize = 8;

/// The endpoints to try for one request, as indices, first choice first.
pub type Order = smallvec::SmallVec<[usize; INLINE_ENDPOINTS]>;

/// Picks endpoints for requests; `preferred` goes first for the failover policy.
#[derive(Debug)]
pub struct Balancer {
    policy: Policy,
    next: AtomicUsize,
    seed: AtomicU64,
}

impl Balancer {
    pub fn new(policy: Policy) -> Self {
        let seed = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(1)
                & u128::from(u64::MAX),
        )
        .unwrap_or(1)
            | 1;
        Self {
            policy,
            next: AtomicUsize::new(0),
            seed: AtomicU64::new(seed),
        }
    }

    fn random(&self, bound: usize) -> usize {
        // xorshift64: cheap, lock-free, good enough to break ties between endpoints.
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        (x % bound.max(1) as u64) as usize
    }

    /// The order in which to try `endpoints`: the policy's choice first, then the other usable
    /// ones as fallbacks. Usable means up, or — when none is up — all of them (panic mode).
    /// Called for every request, so it reads only atomics and allocates nothing for up to
    /// [`INLINE_ENDPOINTS`] endpoints.
    pub fn order<E>(
        &self,
        endpoints: &[E],
        is_up: impl Fn(&E) -> bool,
        load: impl Fn(&E) -> &Load,
        preferred: Option<usize>,
    ) -> Order {
        let mut usable: Order = (0..endpoints.len())
            .filter(|&i| is_up(&endpoints[i]))
            .collect();
        if usable.is_empty() {
            usable = (0..endpoints.len()).collect();
        }
        let cost = |i: usize| load(&endpoints[i]).cost();
        match self.policy {
            Policy::Failover => {
                if let Some(p) = preferred
                    && let Some(pos) = usable.iter().position(|&i| i == p)
                {
                    usable[..=pos].rotate_right(1);
                }
            }
            Policy::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % usable.len().max(1);
                usable.rotate_left(start);
            }
            Policy::LeastRequest => {
                if usable.len() >= 2 {
                    let a = self.random(usable.len());
                    let mut b = self.random(usable.len() - 1);
                    if b >= a {
                        b += 1;
                    }
                    let winner = if cost(usable[a]) <= cost(usable[b]) {
                        a
                    } else {
                        b
                    };
                    usable.swap(0, winner);
                    // Fallbacks cheapest first (ties in configured order).
                    usable[1..]
                        .sort_unstable_by(|&x, &y| cost(x).total_cmp(&cost(y)).then(x.cmp(&y)));
                }
            }
        }
        usable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(n: usize) -> Vec<Arc<Load>> {
        (0..n).map(|_| Arc::new(Load::default())).collect()
    }

    /// The order over endpoints whose health is `up[i]` and load `loads[i]`.
    fn order(
        balancer: &Balancer,
        up: &[bool],
        loads: &[Arc<Load>],
        preferred: Option<usize>,
    ) -> Vec<usize> {
        let endpoints: Vec<(bool, &Load)> =
            up.iter().copied().zip(loads.iter().map(|l| &**l)).collect();
        balancer
            .order(&endpoints, |e| e.0, |e| e.1, preferred)
            .to_vec()
    }

    #[test]
    fn down_endpoints_are_skipped_unless_all_are_down() {
        let balancer = Balancer::new(Policy::RoundRobin);
        let l = loads(3);
        for _ in 0..10 {
            assert_eq!(order(&balancer, &[true, false, true], &l, None).len(), 2);
            assert!(!order(&balancer, &[true, false, true], &l, None).contains(&1));
        }
        assert_eq!(
            order(&balancer, &[false, false, false], &l, None).len(),
            3,
            "panic mode tries all"
        );
    }

    #[test]
    fn round_robin_takes_turns() {
        let balancer = Balancer::new(Policy::RoundRobin);
        let l = loads(3);
        let firsts: Vec<usize> = (0..6)
            .map(|_| order(&balancer, &[true; 3], &l, None)[0])
            .collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn failover_prefers_the_preferred_then_the_configured_order() {
        let balancer = Balancer::new(Policy::Failover);
        let l = loads(3);
        assert_eq!(order(&balancer, &[true; 3], &l, Some(2)), [2, 0, 1]);
        assert_eq!(order(&balancer, &[true, true, false], &l, Some(2)), [0, 1]);
    }

    #[test]
    fn least_request_avoids_the_slow_and_the_busy() {
        let balancer = Balancer::new(Policy::LeastRequest);
        let l = loads(3);
        l[0].observe(Duration::from_millis(200));
        let mut firsts = [0usize; 3];
        for _ in 0..300 {
            firsts[order(&balancer, &[true; 3], &l, None)[0]] += 1;
        }
        assert!(
            firsts[0] < 20,
            "slow endpoint chosen {} of 300 times",
            firsts[0]
        );

        let l = loads(2);
        let _busy: Vec<LoadGuard> = (0..10).map(|_| l[1].start()).collect();
        for _ in 0..50 {
            assert_eq!(order(&balancer, &[true, true], &l, None)[0], 0);
        }
    }

    #[test]
    fn a_released_watch_no_longer_counts() {
        let l = loads(1);
        let mut watch = l[0].start();
        assert_eq!(l[0].in_flight(), 1);
        watch.release();
        assert_eq!(l[0].in_flight(), 0);
        drop(watch);
        assert_eq!(l[0].in_flight(), 0, "released once only");
    }
}
