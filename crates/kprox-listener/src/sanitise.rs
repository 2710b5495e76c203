//! Client credentials are not smuggled to the apiserver: a client's `Authorization`,
//! `Impersonate-*` and `X-Remote-*` headers are removed before kprox adds its own, unless the
//! operator explicitly chose kubectl proxy's pass-through behaviour.

use http::{HeaderMap, HeaderName, header};

/// Removes client-supplied credentials and identity claims. Header names are already lowercase
/// in a `HeaderMap`, so every spelling of `Impersonate-User` is caught.
pub fn strip_client_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    strip_identity_claims(headers);
}

/// Removes what claims an identity other than the credential's: `Impersonate-*` (which the
/// apiserver honours for whoever the credential says may impersonate) and `X-Remote-*` (the
/// front-proxy headers an apiserver trusts only from its front proxy's certificate).
pub fn strip_identity_claims(headers: &mut HeaderMap) {
    let identity: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("impersonate-") || name.starts_with("x-remote-")
        })
        .cloned()
        .collect();
    for name in identity {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn every_identity_header_goes_and_the_rest_stays() {
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        headers.append(
            HeaderName::from_static("impersonate-user"),
            HeaderValue::from_static("admin"),
        );
        headers.append(
            HeaderName::from_static("impersonate-group"),
            HeaderValue::from_static("system:masters"),
        );
        headers.append(
            HeaderName::from_static("impersonate-group"),
            HeaderValue::from_static("other"),
        );
        headers.append(
            HeaderName::from_static("impersonate-extra-scopes"),
            HeaderValue::from_static("x"),
        );
        headers.append(
            HeaderName::from_static("x-remote-user"),
            HeaderValue::from_static("admin"),
        );
        headers.append(header::ACCEPT, HeaderValue::from_static("*/*"));
        let mut claims_only = headers.clone();
        strip_client_credentials(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        strip_identity_claims(&mut claims_only);
        assert_eq!(claims_only.len(), 3, "{claims_only:?}");
        assert_eq!(claims_only.get_all(header::AUTHORIZATION).iter().count(), 2);
    }
}
