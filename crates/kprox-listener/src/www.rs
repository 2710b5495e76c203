//! Static files beside the API (kubectl proxy's `--www` and `--www-prefix`), served by
//! tower-http: content types from file extensions, no path outside the directory.

use std::convert::Infallible;
use std::path::Path;

use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::body::{BoxError, ProxyBody};
use crate::k8s_status::status_response;
use crate::normalise::RequestPath;

/// Serves a directory under a URL prefix.
#[derive(Clone, Debug)]
pub struct StaticFiles {
    prefix: String,
    dir: ServeDir,
}

impl StaticFiles {
    /// Files of `dir` under `prefix` (which starts and ends with `/`).
    pub fn new(dir: &Path, prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            dir: ServeDir::new(dir).append_index_html_on_directories(true),
        }
    }

    /// Whether a judged path (see `normalise.rs`) is under the prefix.
    pub fn covers(&self, path: &str) -> bool {
        path.starts_with(&self.prefix) || path == self.prefix.trim_end_matches('/')
    }

    /// Serves `path` (under the prefix: [`Self::covers`] its judged form).
    pub async fn serve(&self, method: &Method, path: &RequestPath) -> Response<ProxyBody> {
        if !matches!(*method, Method::GET | Method::HEAD) {
            return status_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "static files can only be read (GET or HEAD)",
            );
        }
        // The forwarded form, escapes kept: tower-http decodes them itself and refuses any
        // that would leave the directory.
        let Some(rest) = path.strip_prefix(&self.prefix) else {
            return status_response(
                StatusCode::NOT_FOUND,
                "the path is outside the static files",
            );
        };
        let Ok(uri) = rest.forwarded.parse::<Uri>() else {
            return status_response(StatusCode::BAD_REQUEST, "invalid static file path");
        };
        let mut request = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
        *request.uri_mut() = uri;
        *request.method_mut() = method.clone();
        let response: Result<_, Infallible> = self.dir.clone().oneshot(request).await;
        match response {
            Ok(response) => {
                response.map(|body| body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync())
            }
            Err(never) => match never {},
        }
    }
}
