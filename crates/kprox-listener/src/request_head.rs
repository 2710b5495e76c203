//! Limits on a request's start line and headers (`listen.limits.max_headers`,
//! `max_header_bytes`), answered `431` with a `Status` body. hyper enforces a hard ceiling at
//! twice these (and answers a bare `431`), so a request between the two is read once and
//! refused with an explanation.

use http::Request;

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
    /// hyper's hard ceilings: twice ours.
    pub fn hard_max_headers(&self) -> usize {
        self.max_headers.saturating_mul(2)
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
    fn too_many_bytes_are_named() {
        let big = vec![("x-big", "b".repeat(70 * 1024))];
        let error = HeadLimits::default()
            .check(&request(&big))
            .expect_err("over the size");
        assert!(error.contains("listen.limits.max_header_bytes"), "{error}");
    }
}
