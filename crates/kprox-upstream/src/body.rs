//! The body of a response from the apiservers, as the listener streams it to the client: a body
//! from a pooled connection, or a watch that kprox resumes on another apiserver when its
//! connection breaks (`watch.rs`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;
use crate::pool::PooledBody;
use crate::watch::ResumableWatch;

/// A response body from the apiservers.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Pooled(PooledBody),
    Watch(Box<ResumableWatch>),
}

impl ResponseBody {
    pub(crate) fn pooled(body: PooledBody) -> Self {
        Self {
            inner: Inner::Pooled(body),
        }
    }

    pub(crate) fn watch(watch: ResumableWatch) -> Self {
        Self {
            inner: Inner::Watch(Box::new(watch)),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.inner {
            Inner::Pooled(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|e| -> BoxError { Box::new(e) }))),
            Inner::Watch(watch) => Pin::new(watch.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Pooled(body) => body.is_end_stream(),
            Inner::Watch(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Pooled(body) => body.size_hint(),
            Inner::Watch(_) => SizeHint::default(),
        }
    }
}
