//! Impersonation: kprox acting as another user (`--as`, `--as-group`, `--as-uid`, or the
//! kubeconfig user's `as` fields) through `Impersonate-*` headers. Client-sent ones are removed
//! by the listener, so the apiserver only ever sees kprox's.

use http::{HeaderName, HeaderValue};

use crate::AuthError;

/// Who to impersonate; empty means nobody.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    /// `Impersonate-Extra-<key>` values.
    pub extra: Vec<(String, Vec<String>)>,
}

impl Impersonation {
    /// Whether anything is impersonated.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.uid.is_none() && self.groups.is_empty() && self.extra.is_empty()
    }

    /// The headers to add to every request.
    pub fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, AuthError> {
        if self.user.is_none() && !self.is_empty() {
            return Err(AuthError::Invalid {
                path: String::new(),
                entry: "impersonation".to_owned(),
                reason: "groups, uid or extras need a user to impersonate; fix: add --as USER"
                    .to_owned(),
            });
        }
        let value = |text: &str| {
            HeaderValue::from_str(text).map_err(|_| AuthError::Invalid {
                path: String::new(),
                entry: "impersonation".to_owned(),
                reason: format!("`{text}` cannot be sent in an HTTP header"),
            })
        };
        let mut headers = Vec::new();
        if let Some(user) = &self.user {
            headers.push((HeaderName::from_static("impersonate-user"), value(user)?));
        }
        if let Some(uid) = &self.uid {
            headers.push((HeaderName::from_static("impersonate-uid"), value(uid)?));
        }
        for group in &self.groups {
            headers.push((HeaderName::from_static("impersonate-group"), value(group)?));
        }
        for (key, values) in &self.extra {
            let name = HeaderName::from_bytes(
                format!("impersonate-extra-{}", key.to_ascii_lowercase()).as_bytes(),
            )
            .map_err(|_| AuthError::Invalid {
                path: String::new(),
                entry: "impersonation".to_owned(),
                reason: format!("extra key `{key}` cannot be a header name"),
            })?;
            for v in values {
                headers.push((name.clone(), value(v)?));
            }
        }
        Ok(headers)
    }
}
