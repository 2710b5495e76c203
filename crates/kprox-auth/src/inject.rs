//! Puts kprox's own credentials on a request headed upstream. Client credentials have already
//! been removed by the listener's sanitiser (unless pass-through is configured).

use http::{HeaderMap, header};

use crate::Snapshot;

/// Sets `Authorization` to kprox's credential, replacing any value present, so the apiserver
/// sees exactly one. Without a credential the request is left as it is.
pub fn inject(headers: &mut HeaderMap, snapshot: &Snapshot) {
    if let Some(value) = &snapshot.authorization {
        // `insert` replaces every existing value of the header.
        headers.insert(header::AUTHORIZATION, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn exactly_one_authorization_reaches_upstream() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer client-1"),
        );
        headers.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer client-2"),
        );
        let snapshot = Snapshot {
            authorization: Some(HeaderValue::from_static("Bearer proxy")),
            ..Default::default()
        };
        inject(&mut headers, &snapshot);
        let values: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(values, ["Bearer proxy"]);
    }
}
