//! Limits on a request's start line and headers (`listen.limits.max_headers`,
//! `max_header_bytes`), answered `431` with a `Status` body.
//!
//! The field count is enforced on the raw head before hyper parses it (`head_scan.rs`), so
//! hyper's own ceiling on fields stays at its default (100) unless the limit is set higher:
//! at the default hyper parses into arrays on the stack, and with any explicit ceiling it
//! allocates and zeroes two arrays per request. The byte limit is checked on the parsed
//! request; hyper's hard ceiling on bytes is twice it (and answers a bare `431`), so a head
//! between the two is read once and refused with an explanation. The parsed check also
//! counts fields, for heads the raw scan does not see (pipelined behind a request in flight).

use bytes::Bytes;
use http::{Request, StatusCode};

/// hyper's ceiling on header fields when none is set.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The header limits.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    pub max_headers: usize,
    pub max_bytes: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_headers: kprox_config::DEFAULT_MAX_HEADERS as usize,
            max_bytes: kprox_config::DEFAULT_MAX_HEADER_BYTES as usize,
        }
    }
}

impl From<&kprox_config::ListenLimits> for HeadLimits {
    fn from(limits: &kprox_config::ListenLimits) -> Self {
        Self {
            max_headers: limits.max_headers,
            max_bytes: limits.max_header_bytes,
        }
    }
}

impl HeadLimits {
    /// The ceiling on fields to give hyper: none (its default) unless ours is higher.
    pub fn hyper_max_headers(&self) -> Option<usize> {
        (self.max_headers > HYPER_DEFAULT_MAX_HEADERS).then_some(self.max_headers)
    }

    /// hyper's hard ceiling on the head's bytes: twice ours.
    pub fn hard_max_bytes(&self) -> usize {
        self.max_bytes.saturating_mul(2)
    }

    /// `Err(message)` when the request's head is over a limit.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), String> {
        let headers = request.headers();
        if headers.len() > self.max_headers {
            return Err(format!(
                "the request has {} header fields, more than {} (listen.limits.max_headers)",
                headers.len(),
                self.max_headers
            ));
        }
        // As on the wire: `METHOD target HTTP/1.1\r\n`, then `name: value\r\n` per field.
        let uri = request.uri();
        let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(1, |p| p.as_str().len());
        let start_line = request.method().as_str().len() + target + 11;
        let fields: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        let size = start_line + fields;
        if size > self.max_bytes {
            return Err(format!(
                "the request head is {size} bytes, more than {} (listen.limits.max_header_bytes)",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

/// The whole HTTP/1.1 answer to a head with more than `max_fields` fields, written in
/// place of hyper's: `431`, a `Status` body, and the connection closes.
pub(crate) fn too_many_fields_answer(max_fields: u32) -> Bytes {
    let body = crate::k8s_status::status_json(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        &format!(
            "kprox refused this request: it has more than {max_fields} header fields (listen.limits.max_headers)"
        ),
    );
    Bytes::from(format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, String)]) -> Request<()> {
        let mut builder = Request::get("/api/v1/pods");
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        builder.body(()).expect("valid request")
    }

    #[test]
    fn a_16_kib_bearer_token_fits_the_default() {
        let token = format!("Bearer {}", "a".repeat(16 * 1024));
        assert_eq!(
            HeadLimits::default().check(&request(&[("authorization", token)])),
            Ok(())
        );
    }

    #[test]
    fn too_many_fields_are_named() {
        let many: Vec<(&str, String)> = (0..101).map(|i| ("x-many", i.to_string())).collect();
        let error = HeadLimits::default()
            .check(&request(&many))
            .expect_err("over the count");
        assert!(error.contains("101 header fields"), "{error}");
    }

    #[test]
    fn hyper_keeps_its_default_ceiling_unless_ours_is_higher() {
        assert_eq!(HeadLimits::default().hyper_max_headers(), None);
        let high = HeadLimits {
            max_headers: 150,
            ..HeadLimits::default()
        };
        assert_eq!(high.hyper_max_headers(), Some(150));
    }

    #[test]
    fn the_raw_answer_is_a_complete_431_with_a_status_body() {
        let answer = too_many_fields_answer(100);
        let text = std::str::from_utf8(&answer).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let status: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 431);
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("more than 100 header fields")),
            "{status}"
        );
    }

    #[test]
    fn too_many_bytes_are_named() {
        let big = vec![("x-big", "b".repeat(70 * 1024))];
        let error = HeadLimits::default()
            .check(&request(&big))
            .expect_err("over the size");
        assert!(error.contains("listen.limits.max_header_bytes"), "{error}");
    }
}
