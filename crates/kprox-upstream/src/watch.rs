//! Watch resume: a JSON watch stream whose apiserver goes away mid-stream is re-issued on
//! another apiserver from the last resourceVersion the client saw, and continues in the same
//! client response — no event lost, none repeated.
//!
//! Only whole events (lines) are passed to the client, so a break never leaves half an event
//! behind. The resourceVersion followed is that of each event's object (bookmarks included).
//! If the apiserver can no longer serve that version it answers with an `ERROR` event carrying
//! a 410 `Status` (or a 410 response, turned into that event): the client gets it and relists.
//! A clean end of the stream (`timeoutSeconds`) ends the client's stream too.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode, Uri};
use http_body::{Body, Frame};
use serde::Deserialize;

use crate::pool::PooledBody;
use crate::{BoxError, Upstream, UpstreamError};

/// Resumes in a row without an event in between before giving up.
const MAX_RESUMES: u32 = 5;

type Resume = Pin<Box<dyn Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send>>;

enum State {
    Streaming(PooledBody),
    Resuming(Resume),
    Done,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Streaming(_) => "Streaming",
            Self::Resuming(_) => "Resuming",
            Self::Done => "Done",
        })
    }
}

/// A watch response body that survives the loss of its apiserver.
#[derive(Debug)]
pub(crate) struct ResumableWatch {
    upstream: Arc<Upstream>,
    request: http::request::Parts,
    state: State,
    /// Bytes of an event not yet complete.
    partial: BytesMut,
    /// Complete events waiting to be sent.
    ready: VecDeque<Bytes>,
    /// The resourceVersion to resume from.
    resource_version: Option<String>,
    /// The stream carried an ERROR event: the apiserver ended it on purpose, do not resume.
    saw_error: bool,
    resumes_left: u32,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    object: ObjectHead,
}

#[derive(Deserialize, Default)]
struct ObjectHead {
    #[serde(default)]
    metadata: MetadataHead,
    /// Table watches (kubectl get -w) carry the object in their rows.
    #[serde(default)]
    rows: Vec<RowHead>,
}

#[derive(Deserialize, Default)]
struct RowHead {
    #[serde(default)]
    object: RowObjectHead,
}

#[derive(Deserialize, Default)]
struct RowObjectHead {
    #[serde(default)]
    metadata: MetadataHead,
}

#[derive(Deserialize, Default)]
struct MetadataHead {
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
}

/// Whether a request is a watch kprox can resume: a GET with `watch=1|true`.
pub(crate) fn is_resumable(parts: &http::request::Parts) -> bool {
    parts.method == http::Method::GET
        && parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=1" || p == "watch=true"))
}

/// Whether a response is a JSON watch stream (protobuf streams are passed through unresumed).
pub(crate) fn is_json_stream(response: &Response<PooledBody>) -> bool {
    response.status() == StatusCode::OK
        && response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"))
}

fn query_value<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        pair.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

impl ResumableWatch {
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        request: http::request::Parts,
        body: PooledBody,
    ) -> Self {
        let resource_version = query_value(&request.uri, "resourceVersion")
            .filter(|v| !v.is_empty() && *v != "0")
            .map(str::to_owned);
        Self {
            upstream,
            request,
            state: State::Streaming(body),
            partial: BytesMut::new(),
            ready: VecDeque::new(),
            resource_version,
            saw_error: false,
            resumes_left: MAX_RESUMES,
        }
    }

    /// Moves complete lines from `partial` to `ready`, noting resourceVersions.
    fn split_events(&mut self) {
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line = self.partial.split_to(end + 1).freeze();
            self.note(&line);
            self.ready.push_back(line);
        }
    }

    fn note(&mut self, line: &[u8]) {
        let Ok(event) = serde_json::from_slice::<EventHead<'_>>(line) else {
            return;
        };
        if event.kind == "ERROR" {
            self.saw_error = true;
            return;
        }
        let rv = event.object.metadata.resource_version.or_else(|| {
            event
                .object
                .rows
                .into_iter()
                .next()
                .and_then(|r| r.object.metadata.resource_version)
        });
        if let Some(rv) = rv {
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
                self.resource_version = Some(rv);
            }
        }
        self.resumes_left = MAX_RESUMES;
    }

    /// The same request, from the last resourceVersion.
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
                !p.is_empty()
                    && !p.starts_with("resourceVersion=")
                    && !p.starts_with("resourceVersionMatch=")
                    && !p.starts_with("sendInitialEvents=")
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

    fn start_resume(&mut self) {
        self.resumes_left -= 1;
        // Half an event from the broken stream was never sent; the resumed stream repeats it.
        self.partial.clear();
        let parts = self.resume_request();
        tracing::info!(path = %parts.uri.path(), resource_version = ?self.resource_version, "watch stream broke; resuming on another apiserver");
        let upstream = self.upstream.clone();
        upstream.note_watch_resume();
        self.state = State::Resuming(Box::pin(async move {
            let body = crate::upstream::empty_body();
            upstream
                .send_once(http::Request::from_parts(parts, body))
                .await
        }));
    }
}

fn error_event(status: StatusCode) -> Bytes {
    let reason = if status == StatusCode::GONE {
        "Expired"
    } else {
        "InternalError"
    };
    let event = serde_json::json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("the watch could not be resumed: the apiserver answered {status}"),
        "reason": reason, "code": status.as_u16()}});
    Bytes::from(format!("{event}\n"))
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
                        if let Ok(data) = frame.into_data() {
                            self.partial.extend_from_slice(&data);
                            self.split_events();
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
                        if self.saw_error || self.resumes_left == 0 {
                            self.state = State::Done;
                            return Poll::Ready(Some(Err(Box::new(error))));
                        }
                        tracing::debug!(%error, "watch stream broke");
                        self.start_resume();
                    }
                },
                State::Resuming(resume) => match resume.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(response)) if is_json_stream(&response) => {
                        self.state = State::Streaming(response.into_body());
                    }
                    Poll::Ready(Ok(response)) => {
                        self.state = State::Done;
                        let event = error_event(response.status());
                        self.ready.push_back(event);
                    }
                    Poll::Ready(Err(error)) => {
                        if self.resumes_left == 0 {
                            self.state = State::Done;
                            return Poll::Ready(Some(Err(Box::new(error))));
                        }
                        self.start_resume();
                    }
                },
            }
        }
    }
}
