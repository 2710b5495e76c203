//! The last minutes of kprox, for the status page's charts: every [`EVERY`] the admin listener
//! samples the request count, the watches open and each apiserver's response-time histogram;
//! from consecutive samples come the request rate and each apiserver's p50 and p99, as
//! Prometheus's `rate()` and `histogram_quantile()` would compute them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Metrics;
use crate::metrics::BUCKETS;

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(2);

/// Samples kept: ten minutes.
const KEPT: usize = 300;

/// The window a rate or a quantile is computed over, in samples (10 s).
const WINDOW: usize = 5;

#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    requests: u64,
    watches: i64,
    /// Per apiserver: URL, cumulative bucket counts, total count.
    endpoints: Vec<(String, Vec<u64>, u64)>,
}

/// Samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

/// An apiserver taken out of or brought back into rotation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HealthEvent {
    pub seconds_ago: u64,
    pub endpoint: String,
    pub change: String,
}

/// One apiserver's latency series (milliseconds; `None` where it answered nothing).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LatencySeries {
    pub endpoint: String,
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

/// What the charts draw: one point per sample, `seconds_ago` on the x axis.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ChartData {
    pub seconds_ago: Vec<f64>,
    pub requests_per_second: Vec<f64>,
    pub watches_open: Vec<i64>,
    pub latency: Vec<LatencySeries>,
}

impl History {
    /// Takes a sample of `metrics` now.
    pub fn sample(&mut self, metrics: &Metrics) {
        self.sample_at(metrics, Instant::now());
    }

    fn sample_at(&mut self, metrics: &Metrics, at: Instant) {
        let endpoints = metrics
            .endpoints()
            .into_iter()
            .map(|(url, handles)| {
                let (buckets, count) = handles.response_buckets();
                (url.to_string(), buckets, count)
            })
            .collect();
        self.samples.push_back(Sample {
            at,
            requests: metrics.requests_total(),
            watches: metrics.watches_open().get(),
            endpoints,
        });
        while self.samples.len() > KEPT {
            self.samples.pop_front();
        }
    }

    /// Requests per second over the last 10 s up to `now`, counting `requests_now` — right from
    /// the first seconds, since the first sample is taken at start.
    pub fn rate_now(&self, requests_now: u64, now: Instant) -> f64 {
        let cutoff = now.checked_sub(Duration::from_secs(10));
        let Some(first) = self
            .samples
            .iter()
            .find(|s| cutoff.is_none_or(|c| s.at >= c))
            .or(self.samples.back())
        else {
            return 0.0;
        };
        let elapsed = now.duration_since(first.at).as_secs_f64();
        if elapsed < 0.2 {
            return 0.0;
        }
        requests_now.saturating_sub(first.requests) as f64 / elapsed
    }

    /// The series the charts draw, as of `now`.
    pub fn chart_data(&self, now: Instant) -> ChartData {
        let samples: Vec<&Sample> = self.samples.iter().collect();
        let mut data = ChartData::default();
        let mut endpoints: Vec<String> = Vec::new();
        for s in &samples {
            for (url, _, _) in &s.endpoints {
                if !endpoints.contains(url) {
                    endpoints.push(url.clone());
                }
            }
        }
        data.latency = endpoints
            .iter()
            .map(|e| LatencySeries {
                endpoint: e.clone(),
                ..LatencySeries::default()
            })
            .collect();
        for (i, s) in samples.iter().enumerate() {
            let earlier = samples[i.saturating_sub(WINDOW)];
            data.seconds_ago
                .push(now.saturating_duration_since(s.at).as_secs_f64().round());
            let dt = s.at.duration_since(earlier.at).as_secs_f64();
            let rate = if dt > 0.0 {
                s.requests.saturating_sub(earlier.requests) as f64 / dt
            } else {
                0.0
            };
            data.requests_per_second.push((rate * 10.0).round() / 10.0);
            data.watches_open.push(s.watches);
            for series in &mut data.latency {
                let find = |sample: &Sample| {
                    sample
                        .endpoints
                        .iter()
                        .find(|(u, _, _)| *u == series.endpoint)
                        .map(|(_, b, c)| (b.clone(), *c))
                };
                let (p50, p99) = match (find(s), find(earlier)) {
                    (Some((now_b, now_c)), before) => {
                        let (before_b, before_c) = before.unwrap_or((vec![0; now_b.len()], 0));
                        let delta: Vec<u64> = now_b
                            .iter()
                            .zip(before_b.iter().chain(std::iter::repeat(&0)))
                            .map(|(a, b)| a.saturating_sub(*b))
                            .collect();
                        let total = now_c.saturating_sub(before_c);
                        (quantile(0.5, &delta, total), quantile(0.99, &delta, total))
                    }
                    (None, _) => (None, None),
                };
                series
                    .p50_ms
                    .push(p50.map(|v| (v * 10_000.0).round() / 10.0));
                series
                    .p99_ms
                    .push(p99.map(|v| (v * 10_000.0).round() / 10.0));
            }
        }
        data
    }
}

/// The `q` quantile (seconds) of a histogram's bucket counts (cumulative, over [`BUCKETS`]) and
/// total, interpolated within its bucket as `histogram_quantile` does; `None` if empty.
pub fn quantile(q: f64, cumulative: &[u64], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for (bound, count) in BUCKETS.iter().zip(cumulative) {
        if *count as f64 >= rank {
            let in_bucket = (*count - lower_count) as f64;
            let fraction = if in_bucket > 0.0 {
                (rank - lower_count as f64) / in_bucket
            } else {
                0.0
            };
            return Some(lower_bound + (bound - lower_bound) * fraction);
        }
        lower_bound = *bound;
        lower_count = *count;
    }
    // Beyond the last bound: the last bound, as histogram_quantile answers.
    BUCKETS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        // 100 observations: 50 under 1 ms, 50 between 5 and 10 ms.
        let mut cumulative = vec![0u64; BUCKETS.len()];
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative[i] = if *bound >= 0.01 {
                100
            } else if *bound >= 0.001 {
                50
            } else {
                0
            };
        }
        let p50 = quantile(0.5, &cumulative, 100).expect("p50");
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p99 = quantile(0.99, &cumulative, 100).expect("p99");
        assert!(p99 > 0.005 && p99 <= 0.01, "{p99}");
        assert_eq!(quantile(0.5, &cumulative, 0), None);
    }

    #[test]
    fn the_rate_is_right_from_the_first_seconds() {
        let metrics = Metrics::new("test");
        let mut history = History::default();
        let start = Instant::now();
        history.sample_at(&metrics, start);
        for _ in 0..30 {
            metrics.request(&http::Method::GET, 200, None);
        }
        let rate = history.rate_now(
            metrics.requests_total(),
            start + Duration::from_millis(1500),
        );
        assert!((rate - 20.0).abs() < 0.01, "{rate}");
    }

    #[test]
    fn chart_data_has_a_point_per_sample_and_a_series_per_apiserver() {
        let metrics = Metrics::new("test");
        let a = metrics.endpoint_requests("https://a:6443");
        let mut history = History::default();
        let start = Instant::now();
        history.sample_at(&metrics, start);
        for _ in 0..10 {
            a.observe_response(0.004);
            metrics.request(&http::Method::GET, 200, Some(&a));
        }
        history.sample_at(&metrics, start + EVERY);
        let data = history.chart_data(start + EVERY);
        assert_eq!(data.seconds_ago, [2.0, 0.0]);
        assert_eq!(data.requests_per_second, [0.0, 5.0]);
        assert_eq!(data.latency.len(), 1);
        assert_eq!(data.latency[0].p50_ms[0], None);
        let p50 = data.latency[0].p50_ms[1].expect("a p50");
        assert!(p50 > 2.5 && p50 <= 5.0, "{p50}");
    }
}
