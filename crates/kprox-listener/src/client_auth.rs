//! Authentication of kprox's own clients, for listeners other machines can reach: the client
//! must present the configured bearer token, which kprox then removes so it never reaches the
//! apiserver. (Client certificates are checked by TLS itself, see `tls.rs`.)

use http::{HeaderMap, StatusCode, header};
use kprox_auth::Credentials;

use crate::filter::Rejection;

/// Checks clients' bearer tokens against a token kept fresh by kprox-auth (a token file).
#[derive(Clone, Debug)]
pub struct ClientToken {
    expected: Credentials,
}

impl ClientToken {
    /// `expected` holds `Bearer <token>` as its authorization header.
    pub fn new(expected: Credentials) -> Self {
        Self { expected }
    }

    /// Accepts the request and removes its `Authorization`, or refuses it with 401.
    pub fn check_and_strip(&self, headers: &mut HeaderMap) -> Result<(), Rejection> {
        let snapshot = self.expected.snapshot();
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let ok = match (
            values.next(),
            values.next(),
            snapshot.authorization.as_ref(),
        ) {
            (Some(given), None, Some(expected)) => {
                constant_time_eq(given.as_bytes(), expected.as_bytes())
            }
            _ => false,
        };
        headers.remove(header::AUTHORIZATION);
        if ok {
            Ok(())
        } else {
            Err(Rejection {
                status: StatusCode::UNAUTHORIZED,
                rule: "client-token",
                message: "kprox refused this request: it needs kprox's client bearer token"
                    .to_owned(),
            })
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_is_exact() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abc", b"Bearer abd"));
        assert!(!constant_time_eq(b"Bearer abc", b"Bearer abcd"));
    }
}
