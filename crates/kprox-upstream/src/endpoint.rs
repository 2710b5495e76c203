//! One apiserver address: where to dial, how to name it in requests, and the path to prepend.

use std::fmt;

use http::HeaderValue;
use http::uri::{Authority, Scheme};

use crate::UpstreamError;

/// An apiserver endpoint, parsed once from its URL.
#[derive(Clone)]
pub struct Endpoint {
    /// The URL as configured, for logs and metrics labels (no credentials are ever in it).
    url: String,
    scheme: Scheme,
    /// `host:port` to dial, with the default port filled in.
    authority: Authority,
    /// Host name or IP to dial (brackets removed from IPv6).
    host: String,
    port: u16,
    /// `Host` header / `:authority` to send.
    host_header: HeaderValue,
    /// The URL's path without a trailing slash (for `--append-server-path`), empty for none.
    base_path: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Endpoint {
    /// Parses `https://host[:port][/path]` (or `http://`).
    pub fn parse(text: &str) -> Result<Self, UpstreamError> {
        let invalid = |why: &str| UpstreamError::config(format!("server URL `{text}` {why}"));
        let url = url::Url::parse(text).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
        let scheme = match url.scheme() {
            "https" => Scheme::HTTPS,
            "http" => Scheme::HTTP,
            _ => return Err(invalid("must start with https:// or http://")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("has no port"))?;
        let authority_text = format!("{host}:{port}");
        let authority: Authority = authority_text
            .parse()
            .map_err(|_| invalid("has an invalid host"))?;
        let host_header =
            HeaderValue::from_str(&authority_text).map_err(|_| invalid("has an invalid host"))?;
        let base_path = url.path().trim_end_matches('/').to_owned();
        Ok(Self {
            url: text.trim_end_matches('/').to_owned(),
            scheme,
            authority,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            host_header,
            base_path,
        })
    }

    /// The configured URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether requests go over TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Host to dial and to verify when no TLS server name is configured.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port to dial.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Value for the `Host` header.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// The server URL's path, without trailing slash; empty when none.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_and_paths() {
        let e = Endpoint::parse("https://10.0.0.1").expect("valid");
        assert_eq!(e.authority().as_str(), "10.0.0.1:443");
        assert_eq!(e.base_path(), "");
        let e = Endpoint::parse("https://[::1]:6443/prefix/").expect("valid");
        assert_eq!(e.host(), "::1");
        assert_eq!(e.port(), 6443);
        assert_eq!(e.base_path(), "/prefix");
        assert_eq!(e.host_header(), "[::1]:6443");
        assert!(
            !Endpoint::parse("http://plain:8080")
                .expect("valid")
                .is_tls()
        );
    }

    #[test]
    fn refuses_urls_that_cannot_be_dialled() {
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("https://user:pw@x").is_err());
        assert!(Endpoint::parse("not a url").is_err());
    }
}
