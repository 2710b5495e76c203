//! Watch resume: a watch stream whose apiserver goes away continues in the same client
//! response from another apiserver — but only from a point that is safe (DESIGN.md, step 7).
//!
//! Each stream is relayed event by event (JSON lines, or protobuf frames split on their
//! length prefix: never half an event to the client) through two phases:
//!
//! - **initial events**: a watch with no resourceVersion, `"0"`, or `sendInitialEvents=true`
//!   starts with one synthetic `ADDED` per existing object, in key order, each with its own
//!   object's version — not ordered by version, so no version seen here is a safe resume point.
//!   The phase ends at the first `MODIFIED`, `DELETED` or `BOOKMARK` (for a WatchList, only at
//!   the bookmark annotated `k8s.io/initial-events-end`).
//! - **live**: the last version seen means "everything up to here was delivered"; a break
//!   resumes from it, with `sendInitialEvents` and `resourceVersionMatch` dropped and
//!   everything else (bookmarks, selectors, timeouts) kept.
//!
//! A stream that breaks during its initial events is never resumed from a guess: the client
//! gets an `ERROR` event with a 500 `InternalError` `Status` and the stream ends. Why 500 and
//! not 410: client-go's reflector relists after any `ERROR` (a WatchList falls back to a
//! list), kubectl and scripts show it, and the Python client (kubernetes 37) raises it to the
//! caller — whereas a 410 or a clean end makes that client re-watch silently from the last
//! version it saw, which is exactly the unsafe resume point. A clean end of the stream is
//! passed on as it is, and an `ERROR` from the apiserver ends resume for that stream.
//!
//! When resuming: a 410 is passed on as an `ERROR` event with that 410 (the client relists);
//! "too large resource version" (a replica whose cache is behind, 504, as a response or an
//! `ERROR` event) and other 5xx/429 answers are retried after their `Retry-After`, on
//! whichever apiserver the balancer picks;
//! every resume waits a random fraction of [`RESUME_JITTER`] first, so that the watches of a
//! dead apiserver do not all land on the survivors at once.
//!
//! A replica that said it is behind is tried last on the next resume.
//!
//! The upstream is reached through [`Resend`], so this file knows nothing of endpoints.

use std::collections::VecDeque;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body::{Body, Frame};

use crate::pool::PooledBody;
use crate::served::Served;
use crate::watch_event::{self, EventHead, EventType};
use crate::watch_protobuf;
use crate::watch_request::WatchAsk;
use crate::{BoxError, UpstreamError};

/// Resumes in a row without an event in between before giving up.
const MAX_RESUMES: u32 = 5;

/// Every resume first waits a random time below this.
pub const RESUME_JITTER: Duration = Duration::from_millis(200);

/// Longest wait for a `Retry-After` between resumes.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Wait after a retryable answer that carries no `Retry-After` (the apiserver's own value for
/// "too large resource version").
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// An event larger than this is not buffered: the stream is passed through unresumed from then
/// on (etcd's object limit is 1.5 MiB; this leaves room for Table and managed fields).
const MAX_EVENT_BYTES: usize = 32 * 1024 * 1024;

/// The answer to a re-sent watch request.
pub type Resume = Pin<Box<dyn Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send>>;

/// How a watch reaches the apiservers again: the narrow seam between resume and the upstream.
pub trait Resend: Send + Sync + 'static {
    /// Sends `request` (a GET with no body) to whichever apiserver the balancer picks, trying
    /// `avoid` (a replica that said it is behind) last.
    fn resend(self: Arc<Self>, request: http::request::Parts, avoid: Option<Arc<str>>) -> Resume;
    /// A watch was resumed (metrics).
    fn note_resumed(&self);
    /// A watch broke during its initial events and its client was told to start over.
    fn note_restart_told(&self);
}

/// How a stream's events are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON event per line.
    Json,
    /// Length-prefixed protobuf `WatchEvent`s.
    Protobuf,
}

/// The encoding of a watch response kprox can resume, from its status and `Content-Type`;
/// `None` for anything else (CBOR, unknown types, errors), which passes through untouched.
pub fn resumable_encoding<B>(response: &Response<B>) -> Option<Encoding> {
    if response.status() != StatusCode::OK {
        return None;
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media {
        "application/json" => Some(Encoding::Json),
        "application/vnd.kubernetes.protobuf" => Some(Encoding::Protobuf),
        _ => None,
    }
}

/// Where a watch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Sending the synthetic ADDED events of the current state; `until_bookmark` for a
    /// WatchList, which only its initial-events-end bookmark ends.
    InitialEvents { until_bookmark: bool },
    /// Everything up to the last version seen has been delivered.
    Live,
}

enum State {
    Streaming(PooledBody),
    /// Waiting before the next resume (jitter or `Retry-After`).
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Resuming(Resume),
    Done,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Streaming(_) => "Streaming",
            Self::Waiting(_) => "Waiting",
            Self::Resuming(_) => "Resuming",
            Self::Done => "Done",
        })
    }
}

/// A watch response body that survives the loss of its apiserver when it safely can.
pub struct ResumableWatch {
    upstream: Arc<dyn Resend>,
    request: http::request::Parts,
    encoding: Encoding,
    state: State,
    phase: Phase,
    /// Bytes of an event not yet complete.
    partial: BytesMut,
    /// Complete events waiting to be sent.
    ready: VecDeque<Bytes>,
    /// The resourceVersion to resume from (meaningful once live).
    resource_version: Option<String>,
    /// The stream carried an ERROR event: the apiserver ended it on purpose, do not resume.
    saw_error: bool,
    /// The stream was re-sent and has delivered no event yet.
    just_resumed: bool,
    /// An event grew past [`MAX_EVENT_BYTES`]: bytes pass through as they come, unresumed.
    passthrough: bool,
    resumes_left: u32,
    /// The apiserver of the current stream.
    serving: Option<Arc<str>>,
    /// The replica to try last on the next resume (it said it is behind).
    avoid: Option<Arc<str>>,
}

impl std::fmt::Debug for ResumableWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableWatch")
            .field("path", &self.request.uri.path())
            .field("encoding", &self.encoding)
            .field("state", &self.state)
            .field("phase", &self.phase)
            .field("resource_version", &self.resource_version)
            .finish_non_exhaustive()
    }
}

impl ResumableWatch {
    /// Wraps the body of the first answer to `request` (a watch, see `watch_request.rs`).
    pub fn new(
        upstream: Arc<dyn Resend>,
        request: http::request::Parts,
        encoding: Encoding,
        body: PooledBody,
    ) -> Self {
        let ask = WatchAsk::of(&request.uri);
        let phase = if ask.starts_with_initial_events() {
            Phase::InitialEvents {
                until_bookmark: ask.send_initial_events,
            }
        } else {
            Phase::Live
        };
        Self {
            upstream,
            request,
            encoding,
            state: State::Streaming(body),
            phase,
            partial: BytesMut::new(),
            ready: VecDeque::new(),
            resource_version: ask.resource_version,
            saw_error: false,
            just_resumed: false,
            passthrough: false,
            resumes_left: MAX_RESUMES,
            serving: None,
            avoid: None,
        }
    }

    /// Notes which apiserver serves the stream (from the first answer's extensions).
    pub fn served_by(mut self, endpoint: Option<Arc<str>>) -> Self {
        self.serving = endpoint;
        self
    }

    /// The length of the first complete event in `partial`, if there is one.
    fn next_event_len(&self) -> Option<usize> {
        match self.encoding {
            Encoding::Json => self.partial.iter().position(|b| *b == b'\n').map(|i| i + 1),
            Encoding::Protobuf => {
                watch_protobuf::frame_len(&self.partial).filter(|len| *len <= self.partial.len())
            }
        }
    }

    /// Moves complete events from `partial` to `ready`, following their versions. Returns
    /// `false` when a resumed stream opened with "too large resource version": that stream
    /// is to be dropped and the resume tried again.
    fn split_events(&mut self) -> bool {
        while let Some(len) = self.next_event_len() {
            let event = self.partial.split_to(len).freeze();
            let head = match self.encoding {
                Encoding::Json => watch_event::json_event_head(&event),
                Encoding::Protobuf => watch_protobuf::event_head(&event),
            };
            if let Some(head) = &head
                && self.just_resumed
                && head.kind == EventType::Error
                && (head.too_large_resource_version || head.error_code == Some(504))
            {
                return false;
            }
            if let Some(head) = head {
                self.follow(&head);
            }
            self.just_resumed = false;
            self.ready.push_back(event);
        }
        if self.partial.len() > MAX_EVENT_BYTES {
            tracing::warn!(path = %self.request.uri.path(), "watch event over 32 MiB: passed through unresumed");
            self.passthrough = true;
            let rest = self.partial.split().freeze();
            self.ready.push_back(rest);
        }
        true
    }

    /// The phase and version after one event (see the module documentation).
    fn follow(&mut self, event: &EventHead) {
        if event.kind == EventType::Error {
            self.saw_error = true;
            return;
        }
        self.resumes_left = MAX_RESUMES;
        let ends_initial_events = match (self.phase, event.kind) {
            (Phase::Live, _) => false,
            (Phase::InitialEvents { until_bookmark }, EventType::Bookmark) => {
                event.initial_events_end || !until_bookmark
            }
            (
                Phase::InitialEvents {
                    until_bookmark: false,
                },
                EventType::Modified | EventType::Deleted,
            ) => true,
            (Phase::InitialEvents { .. }, _) => false,
        };
        if ends_initial_events {
            self.phase = Phase::Live;
            // The end of the initial events is consistent at this event's version, whatever
            // the versions of the synthetic ADDED events were.
            self.resource_version = None;
        }
        if self.phase == Phase::Live
            && let Some(rv) = &event.resource_version
        {
            // etcd versions are numbers; never step back when they are.
            let newer = match (
                self.resource_version
                    .as_deref()
                    .and_then(|v| v.parse::<u64>().ok()),
                rv.parse::<u64>().ok(),
            ) {
                (Some(current), Some(next)) => next > current,
                _ => true,
            };
            if newer {
                self.resource_version = Some(rv.clone());
            }
        }
    }

    /// The same request, from the last resourceVersion, asking for no initial events.
    fn resume_request(&self) -> http::request::Parts {
        let mut parts = self.request.clone();
        let Some(rv) = &self.resource_version else {
            return parts;
        };
        let mut query: Vec<String> = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| {
                let key = p.split('=').next().unwrap_or_default();
                !p.is_empty()
                    && key != "resourceVersion"
                    && key != "resourceVersionMatch"
                    && key != "sendInitialEvents"
            })
            .map(str::to_owned)
            .collect();
        query.push(format!("resourceVersion={rv}"));
        let target = format!("{}?{}", parts.uri.path(), query.join("&"));
        if let Ok(uri) = target.parse() {
            parts.uri = uri;
        }
        parts
    }

    /// After a break: resume (after `wait` plus jitter) if the watch is live and may still be
    /// resumed, tell the client to start over if it was in its initial events, or give up.
    fn after_break(&mut self, wait: Duration, error: Option<BoxError>) -> Option<BoxError> {
        // Half an event from the broken stream was never sent; the resumed stream repeats it.
        self.partial.clear();
        if self.saw_error || self.passthrough {
            self.state = State::Done;
            return error;
        }
        if self.phase != Phase::Live || self.resource_version.is_none() {
            self.upstream.note_restart_told();
            tracing::info!(path = %self.request.uri.path(), "watch broke during its initial events; telling the client to start over");
            self.ready.push_back(self.start_over_event());
            self.state = State::Done;
            return None;
        }
        if self.resumes_left == 0 {
            self.state = State::Done;
            return Some(error.unwrap_or_else(|| "the watch could not be resumed".into()));
        }
        self.resumes_left -= 1;
        self.state = State::Waiting(Box::pin(tokio::time::sleep(wait + jitter(RESUME_JITTER))));
        None
    }

    fn send_resume(&mut self) {
        let parts = self.resume_request();
        tracing::info!(path = %parts.uri.path(), resource_version = ?self.resource_version, "watch stream broke; resuming");
        self.upstream.note_resumed();
        self.just_resumed = true;
        let avoid = self.avoid.take();
        self.state = State::Resuming(self.upstream.clone().resend(parts, avoid));
    }

    /// The `ERROR` event that makes a client start over (see the module documentation).
    fn start_over_event(&self) -> Bytes {
        const MESSAGE: &str = "kprox: the apiserver's watch stream broke during its initial events, \
             where no resourceVersion is a safe point to resume from: list and watch again";
        self.error_event(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", MESSAGE)
    }

    fn error_event(&self, status: StatusCode, reason: &str, message: &str) -> Bytes {
        match self.encoding {
            Encoding::Json => {
                let event = serde_json::json!({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": reason, "code": status.as_u16()}});
                Bytes::from(format!("{event}\n"))
            }
            Encoding::Protobuf => watch_protobuf::error_frame(status.as_u16(), reason, message),
        }
    }

    /// What to do with the answer to a resume.
    fn on_resumed(&mut self, response: Response<PooledBody>) {
        let served_by = response
            .extensions()
            .get::<Served>()
            .map(|s| s.endpoint.clone());
        if resumable_encoding(&response) == Some(self.encoding) {
            self.serving = served_by;
            self.state = State::Streaming(response.into_body());
            return;
        }
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            self.avoid = served_by;
            // "Too large resource version" (504), a draining or overloaded replica: again,
            // after the wait it asks for, on whichever apiserver the balancer picks.
            let wait = retry_after(&response).unwrap_or(DEFAULT_RETRY_AFTER);
            if self.after_break(wait, None).is_some() {
                let message =
                    format!("the watch could not be resumed: the apiserver answered {status}");
                self.ready
                    .push_back(self.error_event(status, "InternalError", &message));
            }
            return;
        }
        let reason = if status == StatusCode::GONE {
            "Expired"
        } else {
            "InternalError"
        };
        let message = format!("the watch could not be resumed: the apiserver answered {status}");
        self.ready
            .push_back(self.error_event(status, reason, &message));
        self.state = State::Done;
    }
}

/// `Retry-After` in seconds, capped.
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// A random duration below `max`.
fn jitter(max: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(random % nanos)
}

impl Body for ResumableWatch {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Streaming(body) => match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        if self.passthrough {
                            self.ready.push_back(data);
                            continue;
                        }
                        self.partial.extend_from_slice(&data);
                        if !self.split_events() {
                            tracing::info!(path = %self.request.uri.path(), "resumed on an apiserver that is behind; trying again");
                            self.avoid = self.serving.take();
                            if let Some(error) = self.after_break(DEFAULT_RETRY_AFTER, None) {
                                return Poll::Ready(Some(Err(error)));
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        // A clean end: the apiserver closed the watch on purpose.
                        self.state = State::Done;
                        if !self.partial.is_empty() {
                            let rest = self.partial.split().freeze();
                            self.ready.push_back(rest);
                        }
                    }
                    Poll::Ready(Some(Err(error))) => {
                        tracing::debug!(%error, "watch stream broke");
                        if let Some(error) = self.after_break(Duration::ZERO, Some(Box::new(error)))
                        {
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                },
                State::Waiting(sleep) => match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.send_resume(),
                },
                State::Resuming(resume) => match resume.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(response)) => self.on_resumed(response),
                    Poll::Ready(Err(error)) => {
                        if let Some(error) = self.after_break(Duration::ZERO, Some(Box::new(error)))
                        {
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                },
            }
        }
    }
}
