//! Which requests are watches, read exactly as the apiserver reads them, and what a watch
//! request asks for (its resourceVersion, `sendInitialEvents`, bookmarks).
//!
//! One function, [`is_watch`], used by the listener (metrics, the watch fast path), the
//! balancer's load accounting and watch resume alike. The apiserver's rule
//! (k8s.io/apiserver `RequestInfoFactory` and apimachinery's query conversion):
//!
//! - a GET whose path, under `/api/VERSION` or `/apis/GROUP/VERSION`, starts with the legacy
//!   `watch` segment (`/api/v1/watch/namespaces/default/pods`, ruby kubeclient's form); or
//! - a GET on a collection (no object name in the path) whose first `watch` query value is
//!   present and neither `0` nor `false` in any case: `watch=1`, `watch=true`, `watch=True`
//!   (kubernetes_asyncio), `watch=t`, even `watch` or `watch=`. The same rule reads
//!   `sendInitialEvents` and `allowWatchBookmarks`.
//!
//! Not for: parsing events (see `watch_event.rs`) or resuming (`watch.rs`).

use std::borrow::Cow;

use http::{Method, Uri};

/// Subresources of a namespace: `/api/v1/namespaces/NAME/status` names the namespace.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// Whether `method` and `uri` (origin form) make a watch request, as the apiserver decides.
/// Runs on every request: it allocates only for percent-escaped segments.
pub fn is_watch(method: &Method, uri: &Uri) -> bool {
    if method != Method::GET {
        return false;
    }
    let Some(parts) = ResourceParts::of(uri.path()) else {
        return false;
    };
    if parts.first.as_deref() == Some("watch") {
        return true;
    }
    parts.names_a_collection() && flag(uri.query(), "watch")
}

/// The first segments of a path after `/api/VERSION` or `/apis/GROUP/VERSION`, decoded, and
/// how many there are.
struct ResourceParts<'a> {
    first: Option<Cow<'a, str>>,
    third: Option<Cow<'a, str>>,
    count: usize,
}

impl<'a> ResourceParts<'a> {
    /// `None` for any path outside the resource APIs (discovery, `/version`, `/healthz`, ...).
    fn of(path: &'a str) -> Option<Self> {
        let mut segments = path.split('/').filter(|s| !s.is_empty()).map(decode);
        let skip = match segments.next()?.as_ref() {
            "api" => 1,
            "apis" => 2,
            _ => return None,
        };
        for _ in 0..skip {
            segments.next()?;
        }
        let first = segments.next();
        let second = segments.next();
        let third = segments.next();
        let count = usize::from(first.is_some())
            + usize::from(second.is_some())
            + usize::from(third.is_some())
            + segments.count();
        (count > 0).then_some(Self {
            first,
            third,
            count,
        })
    }

    /// Whether the parts name a collection rather than one object: `RESOURCE`, or
    /// `namespaces/NS/RESOURCE` (`namespaces/NAME` and `namespaces/NAME/status` are the
    /// namespace NAME).
    fn names_a_collection(&self) -> bool {
        let namespaced = self.first.as_deref() == Some("namespaces")
            && self
                .third
                .as_deref()
                .is_some_and(|third| !NAMESPACE_SUBRESOURCES.contains(&third));
        if namespaced {
            self.count == 3
        } else {
            self.count == 1
        }
    }
}

/// The first value of query parameter `key`, decoded, if the parameter is present (`key`
/// alone has the value `""`).
pub fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<Cow<'a, str>> {
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_query(name) == key).then(|| decode_query(value))
    })
}

/// A boolean query parameter as apimachinery converts it: absent → false; present with a
/// first value of `0` or `false` (any case) → false; any other value, empty included → true.
pub fn flag(query: Option<&str>, key: &str) -> bool {
    query_value(query, key).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// What a watch request asks of the apiserver, for resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchAsk {
    /// `resourceVersion`, if given and not empty.
    pub resource_version: Option<String>,
    /// `sendInitialEvents=true`: a WatchList (streaming list) request.
    pub send_initial_events: bool,
}

impl WatchAsk {
    pub fn of(uri: &Uri) -> Self {
        Self {
            resource_version: query_value(uri.query(), "resourceVersion")
                .filter(|v| !v.is_empty())
                .map(Cow::into_owned),
            send_initial_events: flag(uri.query(), "sendInitialEvents"),
        }
    }

    /// Whether the stream starts with the synthetic `ADDED` events of the current state: no
    /// resourceVersion, `"0"`, or `sendInitialEvents=true`.
    pub fn starts_with_initial_events(&self) -> bool {
        self.send_initial_events || matches!(self.resource_version.as_deref(), None | Some("0"))
    }
}

fn hex(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-decoding; `plus_is_space` for query strings (Go's `url.ParseQuery`).
fn decode_with(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                if let (Some(high), Some(low)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(high * 16 + low);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode(segment: &str) -> Cow<'_, str> {
    if segment.contains('%') {
        Cow::Owned(decode_with(segment, false))
    } else {
        Cow::Borrowed(segment)
    }
}

fn decode_query(text: &str) -> Cow<'_, str> {
    if text.contains(['%', '+']) {
        Cow::Owned(decode_with(text, true))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(target: &str) -> bool {
        is_watch(&Method::GET, &target.parse().expect("uri"))
    }

    #[test]
    fn watch_values_are_read_as_apimachinery_reads_them() {
        for value in ["1", "true", "True", "TRUE", "t", "T", "yes", ""] {
            assert!(
                watch(&format!("/api/v1/pods?watch={value}")),
                "watch={value}"
            );
        }
        assert!(watch("/api/v1/pods?watch"));
        assert!(watch("/api/v1/pods?%77atch=1"));
        for value in ["0", "false", "False", "FALSE"] {
            assert!(
                !watch(&format!("/api/v1/pods?watch={value}")),
                "watch={value}"
            );
        }
        // The first value decides, as url.Values.Get does.
        assert!(!watch("/api/v1/pods?watch=false&watch=true"));
        assert!(!watch("/api/v1/pods?watchers=1"));
        assert!(!watch("/api/v1/pods"));
    }

    #[test]
    fn collections_in_every_api_are_watched_and_objects_are_not() {
        for target in [
            "/api/v1/pods?watch=1",
            "/api/v1/namespaces/default/pods?watch=1",
            "/api/v1/namespaces?watch=1",
            "/apis/apps/v1/deployments?watch=1",
            "/apis/apps/v1/namespaces/x/deployments?watch=true",
            "/apis/example.com/v1alpha1/namespaces/x/widgets?watch=True",
        ] {
            assert!(watch(target), "{target}");
        }
        for target in [
            "/api/v1/namespaces/default/pods/alpha?watch=1",
            "/api/v1/namespaces/default?watch=1",
            "/api/v1/namespaces/default/status?watch=1",
            "/api/v1/namespaces/default/pods/alpha/log?watch=1",
            "/apis/apps/v1?watch=1",
            "/api?watch=1",
            "/version?watch=1",
            "/healthz?watch=1",
        ] {
            assert!(!watch(target), "{target}");
        }
    }

    #[test]
    fn legacy_watch_paths_are_watches() {
        for target in [
            "/api/v1/watch/pods",
            "/api/v1/watch/namespaces/default/pods",
            "/api/v1/watch/namespaces/default/pods/alpha",
            "/apis/apps/v1/watch/namespaces/x/deployments",
            "/api/v1/%77atch/pods",
        ] {
            assert!(watch(target), "{target}");
        }
        assert!(!watch("/api/v1/namespaces/watch/pods"));
        assert!(!is_watch(
            &Method::POST,
            &"/api/v1/watch/pods".parse().expect("uri")
        ));
        assert!(!is_watch(
            &Method::POST,
            &"/api/v1/pods?watch=1".parse().expect("uri")
        ));
    }

    #[test]
    fn what_a_watch_asks_for() {
        let ask = |target: &str| WatchAsk::of(&target.parse().expect("uri"));
        assert!(ask("/api/v1/pods?watch=1").starts_with_initial_events());
        assert!(ask("/api/v1/pods?watch=1&resourceVersion=").starts_with_initial_events());
        assert!(ask("/api/v1/pods?watch=1&resourceVersion=0").starts_with_initial_events());
        assert!(!ask("/api/v1/pods?watch=1&resourceVersion=42").starts_with_initial_events());
        let list = ask(
            "/api/v1/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=42",
        );
        assert!(list.send_initial_events && list.starts_with_initial_events());
        assert_eq!(list.resource_version.as_deref(), Some("42"));
        assert_eq!(
            query_value(Some("a=1&labelSelector=app%3Dweb+x"), "labelSelector").as_deref(),
            Some("app=web x")
        );
    }
}
