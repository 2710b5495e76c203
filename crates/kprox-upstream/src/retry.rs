//! When a failed attempt may be tried again, and how often.
//!
//! - A request the apiserver never received (refused connection, TLS failure, refused stream,
//!   GOAWAY, dead pooled connection) is always tried on another endpoint: nothing happened.
//! - A replayable request (GET, HEAD or OPTIONS without a body) is also retried after a reset
//!   before the response, or a `503`/`429` whose `Retry-After` is within the cap — within a retry
//!   budget, after a jittered backoff.
//! - Anything else that may have been received is never retried: a POST whose bytes were
//!   written could be applied twice.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode, header};

use crate::UpstreamError;
use crate::error::{ErrorKind, Sent};

/// Retry limits.
#[derive(Clone, Debug)]
pub struct RetrySettings {
    /// Retries may add at most this share of requests (percent).
    pub budget_percent: u32,
    /// ...but at least this many retries per second are always allowed.
    pub min_per_second: u32,
    /// A `Retry-After` longer than this is not waited for: the answer goes to the client.
    pub retry_after_cap: Duration,
    /// Attempts per request at most, the first included.
    pub max_attempts: usize,
}

impl From<&kprox_config::UpstreamConfig> for RetrySettings {
    fn from(config: &kprox_config::UpstreamConfig) -> Self {
        Self {
            budget_percent: config.retry_budget_percent,
            min_per_second: config.retry_min_per_second,
            retry_after_cap: config.retry_after_cap.get(),
            max_attempts: config.max_attempts,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Give the failure to the client.
    Stop,
    /// Try the next endpoint now; free (the request never left).
    Again,
    /// Try the next endpoint after this wait; charged to the budget.
    After(Duration),
}

/// Why a retry happened, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    NotSent,
    Reset,
    Unavailable,
}

/// Whether a request can be sent again as it was: a safe method and no body.
pub fn replayable(method: &Method, headers: &HeaderMap, body_is_empty: bool) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && body_is_empty
        && !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// `Retry-After` in seconds (the HTTP-date form is not worth waiting for here).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Decides after an error.
pub fn after_error(
    error: &UpstreamError,
    replayable: bool,
    attempt: usize,
    budget: &RetryBudget,
) -> (Decision, Reason) {
    if error.sent() == Sent::No {
        return (Decision::Again, Reason::NotSent);
    }
    let reset = matches!(
        error.kind(),
        ErrorKind::Protocol | ErrorKind::ConnectTimeout
    );
    if replayable && reset && budget.try_withdraw() {
        return (Decision::After(backoff(attempt)), Reason::Reset);
    }
    (Decision::Stop, Reason::Reset)
}

/// Decides after a response; only `503` and `429` are worth another endpoint.
pub fn after_response(
    status: StatusCode,
    headers: &HeaderMap,
    replayable: bool,
    attempt: usize,
    settings: &RetrySettings,
    budget: &RetryBudget,
) -> Decision {
    if !replayable
        || !matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        )
    {
        return Decision::Stop;
    }
    let wait = match retry_after(headers) {
        // A 429 with a long Retry-After is this replica's (a shutting-down apiserver asks
        // for 5 s, and over HTTP/2 its `Connection: close` is not seen): the next replica can
        // answer now. A 503 that long means the API behind it is down: not retried.
        Some(wait) if wait > settings.retry_after_cap => {
            if status == StatusCode::TOO_MANY_REQUESTS {
                Duration::ZERO
            } else {
                return Decision::Stop;
            }
        }
        Some(wait) => wait,
        None => backoff(attempt),
    };
    if budget.try_withdraw() {
        Decision::After(wait)
    } else {
        Decision::Stop
    }
}

/// Whether an answer says its apiserver is shutting down: the 429 of
/// `--shutdown-send-retry-after` (k/k#101257), which carries `Connection: close` over HTTP/1.1
/// (over HTTP/2 that becomes a GOAWAY, not seen here) and a `Retry-After` of 5 s — longer than
/// `retry_after_cap`, where priority-and-fairness rejections ask for 1 s. Such a replica gets
/// no new requests; a replayable request moves to another at once.
pub fn is_draining(status: StatusCode, headers: &HeaderMap, settings: &RetrySettings) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        && (headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|option| option.trim().eq_ignore_ascii_case("close"))
            || retry_after(headers).is_some_and(|wait| wait > settings.retry_after_cap))
}

/// 25 ms doubling per attempt up to 250 ms (Envoy's defaults), with full jitter.
pub fn backoff(attempt: usize) -> Duration {
    let ceiling = (25u64 << attempt.min(4)).min(250);
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    );
    Duration::from_millis(ceiling / 2 + nanos % (ceiling / 2 + 1))
}

/// A token bucket: each request deposits a share of a token, each budgeted retry takes one,
/// and a minimum number of tokens trickles in every second.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a token.
    milli_tokens: AtomicI64,
    deposit: i64,
    per_second: i64,
    cap: i64,
    epoch: Instant,
    last_refill_secs: AtomicU64,
}

impl RetryBudget {
    pub fn new(settings: &RetrySettings) -> Self {
        let per_second = i64::from(settings.min_per_second) * 1000;
        Self {
            milli_tokens: AtomicI64::new(per_second),
            deposit: i64::from(settings.budget_percent) * 10,
            per_second,
            cap: (per_second * 10).max(10_000),
            epoch: Instant::now(),
            last_refill_secs: AtomicU64::new(0),
        }
    }

    /// Called once per request.
    pub fn deposit(&self) {
        self.add(self.deposit);
    }

    fn add(&self, amount: i64) {
        let cap = self.cap;
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + amount).min(cap))
            });
    }

    fn refill(&self) {
        let now = self.epoch.elapsed().as_secs();
        let last = self.last_refill_secs.swap(now, Ordering::Relaxed);
        if now > last {
            self.add(self.per_second * i64::try_from(now - last).unwrap_or(i64::MAX / 2_000_000));
        }
    }

    /// Takes a token for a retry, if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.refill();
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= 1000).then_some(t - 1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn settings() -> RetrySettings {
        RetrySettings {
            budget_percent: 20,
            min_per_second: 2,
            retry_after_cap: Duration::from_secs(1),
            max_attempts: 3,
        }
    }

    #[test]
    fn only_safe_methods_without_a_body_are_replayable() {
        let empty = HeaderMap::new();
        assert!(replayable(&Method::GET, &empty, true));
        assert!(replayable(&Method::HEAD, &empty, true));
        assert!(!replayable(&Method::GET, &empty, false));
        assert!(!replayable(&Method::POST, &empty, true));
        assert!(
            !replayable(&Method::DELETE, &empty, true),
            "DELETE is idempotent but changes state; not retried after it may have been received"
        );
        let mut chunked = HeaderMap::new();
        chunked.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(!replayable(&Method::GET, &chunked, true));
    }

    #[test]
    fn unsent_requests_are_always_retried_and_sent_posts_never() {
        let budget = RetryBudget::new(&settings());
        let unsent = UpstreamError::new(ErrorKind::Connect, Sent::No, "refused");
        assert_eq!(after_error(&unsent, false, 1, &budget).0, Decision::Again);
        let reset = UpstreamError::new(ErrorKind::Protocol, Sent::Maybe, "reset");
        assert_eq!(
            after_error(&reset, false, 1, &budget).0,
            Decision::Stop,
            "a POST that may have arrived"
        );
        assert!(
            matches!(after_error(&reset, true, 1, &budget).0, Decision::After(_)),
            "a GET reset before its answer"
        );
    }

    #[test]
    fn unavailable_answers_are_retried_within_the_retry_after_cap() {
        let budget = RetryBudget::new(&settings());
        let s = settings();
        let mut headers = HeaderMap::new();
        assert!(matches!(
            after_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers,
                true,
                1,
                &s,
                &budget
            ),
            Decision::After(_)
        ));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(
            after_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers,
                true,
                1,
                &s,
                &budget
            ),
            Decision::Stop
        );
        // A 429 beyond the cap speaks for its replica only: the next one is tried at once.
        assert_eq!(
            after_response(
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                true,
                1,
                &s,
                &budget
            ),
            Decision::After(Duration::ZERO)
        );
        assert_eq!(
            after_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &HeaderMap::new(),
                true,
                1,
                &s,
                &budget
            ),
            Decision::Stop
        );
        assert_eq!(
            after_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &HeaderMap::new(),
                false,
                1,
                &s,
                &budget
            ),
            Decision::Stop
        );
    }

    #[test]
    fn the_budget_runs_out_and_requests_refill_it() {
        let budget = RetryBudget::new(&settings());
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "the per-second minimum is spent");
        for _ in 0..5 {
            budget.deposit(); // 5 requests × 20% = one retry
        }
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn backoff_is_jittered_within_envoys_bounds() {
        for attempt in 0..8 {
            let wait = backoff(attempt);
            assert!(
                wait >= Duration::from_millis(12) && wait <= Duration::from_millis(250),
                "{wait:?}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn method() -> impl Strategy<Value = Method> {
            prop_oneof![
                Just(Method::GET),
                Just(Method::HEAD),
                Just(Method::OPTIONS),
                Just(Method::POST),
                Just(Method::PUT),
                Just(Method::PATCH),
                Just(Method::DELETE),
            ]
        }

        fn kind() -> impl Strategy<Value = ErrorKind> {
            prop_oneof![
                Just(ErrorKind::Config),
                Just(ErrorKind::Connect),
                Just(ErrorKind::ConnectTimeout),
                Just(ErrorKind::Tls),
                Just(ErrorKind::Protocol),
                Just(ErrorKind::NoEndpoint),
            ]
        }

        fn headers(length: Option<u16>, chunked: bool) -> HeaderMap {
            let mut headers = HeaderMap::new();
            if let Some(n) = length {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            if chunked {
                headers.insert(
                    header::TRANSFER_ENCODING,
                    HeaderValue::from_static("chunked"),
                );
            }
            headers
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            /// Only a safe method with no body at all can be sent twice.
            #[test]
            fn replayable_means_safe_and_bodiless(
                method in method(), length in proptest::option::of(0u16..4), chunked: bool, empty: bool,
            ) {
                let replayable = replayable(&method, &headers(length, chunked), empty);
                let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
                prop_assert_eq!(replayable, safe && empty && !chunked && length.unwrap_or(0) == 0);
            }

            /// Whatever failed: a request that never left is always tried again at once, and
            /// one that may have been received is retried only if replayable.
            #[test]
            fn a_sent_request_is_retried_only_when_replayable(
                kind in kind(), sent: bool, replayable: bool, attempt in 1usize..5,
            ) {
                let budget = RetryBudget::new(&settings());
                let error = UpstreamError::new(kind, if sent { Sent::Maybe } else { Sent::No }, "x");
                let (decision, _) = after_error(&error, replayable, attempt, &budget);
                if !sent {
                    prop_assert_eq!(decision, Decision::Again);
                } else if !replayable {
                    prop_assert_eq!(decision, Decision::Stop);
                }
            }

            /// A response is retried only for a replayable request answered 503 or 429 whose
            /// Retry-After (if any) is within the cap; the wait never exceeds the cap.
            #[test]
            fn a_response_is_retried_only_when_unavailable_and_replayable(
                status in 100u16..600, replayable: bool, retry_after in proptest::option::of(0u64..5),
            ) {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let mut headers = HeaderMap::new();
                if let Some(seconds) = retry_after {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                let budget = RetryBudget::new(&settings());
                let decision = after_response(status, &headers, replayable, 1, &settings(), &budget);
                let unavailable = matches!(status.as_u16(), 503 | 429);
                let within_cap = status.as_u16() == 429
                    || retry_after.is_none_or(|s| Duration::from_secs(s) <= settings().retry_after_cap);
                match decision {
                    Decision::After(wait) => {
                        prop_assert!(replayable && unavailable && within_cap);
                        prop_assert!(wait <= settings().retry_after_cap.max(backoff(1)));
                    }
                    Decision::Stop => prop_assert!(!(replayable && unavailable && within_cap)),
                    Decision::Again => prop_assert!(false, "a response is never retried for free"),
                }
            }
        }
    }
}
