//! Two forms of a request path: the one the filters judge and the one kprox forwards.
//!
//! kubectl proxy forwards a path byte for byte and judges it as the apiserver reads it (Go's
//! `URL.Path`: every escape decoded). kprox does the same, and closes the gaps between the two:
//!
//! - **judged**: every escape decoded (`%65xec` → `exec`, `%2F` → `/`) — ASCII only; escapes of
//!   non-ASCII bytes stay as upper-case `%XX` —, then `//` runs merged and `.` / `..` segments
//!   removed (RFC 3986 §5.2.4). The filters, the API prefix, static files and the access log
//!   see this form, so `pods/x%2Fexec`, `pods//x//exec`, `pods/x/./exec` and `pods/x/%65xec`
//!   are all judged as `pods/x/exec`.
//! - **forwarded**: the path exactly as the client sent it, when its own segments (split on its
//!   literal `/`) hold no empty, `.` or `..` segment (the usual case, `%2F` included: a RabbitMQ
//!   vhost `/` is `.../queues/%2F`). Otherwise the segments are resolved as above and the rest
//!   is kept (unreserved escapes decoded, others upper-cased): kubectl proxy answers such paths
//!   with a redirect to the same clean form.
//!
//! Refused outright, because servers read them differently and no single form can be judged:
//! malformed escapes, NUL (`%00`) and other encoded control characters, backslashes (`\`, `%5C`), `;` (`;`, `%3B`: path parameters
//! to some servers), control, space and non-ASCII bytes, and a `.` or `..` segment made by an
//! encoded slash (`x%2F..%2Fexec`), whose meaning depends on whether the slash is decoded first.

use std::fmt;

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmbiguousPath(&'static str);

impl fmt::Display for AmbiguousPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A request path in the two forms kprox needs (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestPath {
    /// Decoded and normalised: what the filters judge, the prefix is taken from and the log shows.
    pub judged: String,
    /// What is sent to the apiserver: the client's bytes, or their normalised form when the
    /// client's own segments had `//`, `.` or `..`.
    pub forwarded: String,
}

impl RequestPath {
    /// The path under `prefix` (a normalised path such as `/k8s/`), in both forms, or `None`
    /// when the path is outside it. The prefix is matched segment by segment, on the judged
    /// form and on the decoded segments of the forwarded form alike, so that an escape in the
    /// prefix (`/%6B8s/api`) is the prefix and a segment that merely starts like it
    /// (`/k8sfoo`) is not; a prefix segment spelt with an encoded slash is outside.
    pub fn strip_prefix(&self, prefix: &str) -> Option<RequestPath> {
        let wanted: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
        Some(RequestPath {
            judged: strip_segments(&self.judged, &wanted, |s| s.to_owned())?,
            forwarded: strip_segments(&self.forwarded, &wanted, decode_ascii)?,
        })
    }
}

/// `path` without its first segments when they equal `wanted` after `decode`.
fn strip_segments(path: &str, wanted: &[&str], decode: impl Fn(&str) -> String) -> Option<String> {
    let mut rest = path;
    for segment in wanted {
        let after = rest.strip_prefix('/')?;
        let end = after.find('/').unwrap_or(after.len());
        if decode(&after[..end]) != *segment {
            return None;
        }
        rest = &after[end..];
    }
    Some(if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    })
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, value: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(value >> 4)]));
    out.push(char::from(HEX[usize::from(value & 15)]));
}

/// Decodes the escapes of a checked path: ASCII ones, or only unreserved ones.
fn decode(path: &str, all_ascii: bool) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex_value(*bytes.get(i + 1)?)? * 16 + hex_value(*bytes.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(value) if is_unreserved(value) || (all_ascii && value.is_ascii()) => {
                out.push(char::from(value));
                i += 3;
            }
            Some(value) => {
                push_escape(&mut out, value);
                i += 3;
            }
            None => {
                out.push(char::from(bytes[i]));
                i += 1;
            }
        }
    }
    out
}

/// Every ASCII escape decoded, as Go's `URL.Path` has it.
fn decode_ascii(path: &str) -> String {
    decode(path, true)
}

/// Refuses the bytes and escapes no server agrees on.
fn check_bytes(path: &str) -> Result<(), AmbiguousPath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(AmbiguousPath("the path must start with `/`"));
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(high), Some(low)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(AmbiguousPath(
                        "the path contains a malformed percent-escape",
                    ));
                };
                match high * 16 + low {
                    b'\\' => {
                        return Err(AmbiguousPath(
                            "the path contains an encoded backslash (%5C)",
                        ));
                    }
                    0 => return Err(AmbiguousPath("the path contains an encoded NUL (%00)")),
                    // Decoded, a newline would end `.` in the filters' regexes early, so
                    // `…/pods/x%0Ay/attach` would escape `^/api/.*/pods/.*/attach`.
                    0x01..=0x1f | 0x7f => {
                        return Err(AmbiguousPath(
                            "the path contains an encoded control character (%01-%1F, %7F)",
                        ));
                    }
                    b';' => return Err(AmbiguousPath("the path contains an encoded `;` (%3B)")),
                    _ => {}
                }
                i += 3;
            }
            b'\\' => return Err(AmbiguousPath("the path contains a backslash")),
            b';' => {
                return Err(AmbiguousPath(
                    "the path contains `;` (path parameters are not allowed)",
                ));
            }
            0..=0x20 | 0x7f.. => {
                return Err(AmbiguousPath(
                    "the path contains a control, space or non-ASCII byte",
                ));
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Whether a path (starting with `/`) has an empty segment before its last, or a `.` / `..`
/// segment: the forms that [`resolve_segments`] changes.
fn has_dot_or_empty_segments(path: &str) -> bool {
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return true;
        }
    }
    false
}

/// Merges `//` runs and removes `.` / `..` segments (never climbing above the root); a
/// trailing slash is kept.
fn resolve_segments(path: &str) -> String {
    let trailing_slash =
        path.len() > 1 && (path.ends_with('/') || path.ends_with("/.") || path.ends_with("/.."));
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push('/');
    }
    out
}

/// The judged and forwarded forms of `path` (which must start with `/`), or why it has none.
pub fn normalise(path: &str) -> Result<RequestPath, AmbiguousPath> {
    check_bytes(path)?;
    let has_encoded_slash = path.contains("%2F") || path.contains("%2f");
    let fully_decoded = decode_ascii(path);
    // The client's own segments, with `%2e` read as `.` so that `%2e%2e` is `..` too.
    let own_segments = decode(path, false);
    let forwarded = if has_dot_or_empty_segments(&own_segments) {
        if has_encoded_slash {
            return Err(AmbiguousPath(
                "the path has an encoded slash (%2F) together with `//`, `.` or `..` segments",
            ));
        }
        resolve_segments(&own_segments)
    } else {
        path.to_owned()
    };
    let dot_made_by_encoded_slash = has_encoded_slash
        && fully_decoded[1..]
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if dot_made_by_encoded_slash {
        return Err(AmbiguousPath(
            "the path has a `.` or `..` segment made by an encoded slash (%2F)",
        ));
    }
    Ok(RequestPath {
        judged: resolve_segments(&fully_decoded),
        forwarded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> RequestPath {
        normalise(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn judged(path: &str) -> String {
        ok(path).judged
    }

    fn forwarded(path: &str) -> String {
        ok(path).forwarded
    }

    #[test]
    fn canonical_paths_are_unchanged_in_both_forms() {
        for path in [
            "/",
            "/api",
            "/api/v1/namespaces/default/pods",
            "/api/v1/pods/",
            "/apis/apps/v1",
            "/x~y_z-1.2",
        ] {
            assert_eq!(
                ok(path),
                RequestPath {
                    judged: path.into(),
                    forwarded: path.into()
                }
            );
        }
    }

    #[test]
    fn escapes_are_decoded_for_judging_and_forwarded_as_sent() {
        let exec = "/api/v1/namespaces/d/pods/p/%65xec";
        assert_eq!(judged(exec), "/api/v1/namespaces/d/pods/p/exec");
        assert_eq!(forwarded(exec), exec);
        assert_eq!(judged("/%61%70%69"), "/api");
        assert_eq!(judged("/a%2eb"), "/a.b");
        assert_eq!(judged("/a%3ab"), "/a:b");
        assert_eq!(forwarded("/a%3ab"), "/a%3ab");
        assert_eq!(judged("/a%c3%a9"), "/a%C3%A9");
        assert_eq!(
            ok("/a%20b"),
            RequestPath {
                judged: "/a b".into(),
                forwarded: "/a%20b".into()
            }
        );
    }

    #[test]
    fn encoded_slashes_are_forwarded_byte_for_byte_and_judged_as_slashes() {
        let vhost = "/api/v1/namespaces/default/services/rabbitmq:15672/proxy/api/queues/%2F";
        assert_eq!(forwarded(vhost), vhost);
        assert_eq!(
            judged(vhost),
            "/api/v1/namespaces/default/services/rabbitmq:15672/proxy/api/queues/"
        );
        assert_eq!(forwarded("/a/b%2fc"), "/a/b%2fc");
        assert_eq!(
            judged("/api/v1/namespaces/d/pods/x%2Fexec"),
            "/api/v1/namespaces/d/pods/x/exec"
        );
        assert_eq!(
            judged("/api/v1/namespaces/d/pods/x%2F%2Fexec"),
            "/api/v1/namespaces/d/pods/x/exec"
        );
    }

    #[test]
    fn dot_segments_and_double_slashes_are_resolved_in_both_forms() {
        for (raw, clean) in [
            ("//api//v1", "/api/v1"),
            ("/api/./v1", "/api/v1"),
            (
                "/api/v1/namespaces/d/pods/p/x/../exec",
                "/api/v1/namespaces/d/pods/p/exec",
            ),
            ("/api/%2e%2e/api/v1", "/api/v1"),
            ("/../../etc", "/etc"),
            ("/api/..", "/"),
            ("/api/v1/.", "/api/v1/"),
        ] {
            assert_eq!(
                ok(raw),
                RequestPath {
                    judged: clean.into(),
                    forwarded: clean.into()
                },
                "{raw}"
            );
        }
        // The forwarded form keeps escapes that are not unreserved.
        assert_eq!(forwarded("/a//b%3ac"), "/a/b%3Ac");
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        for path in [
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a%0A",
            "/a%0d",
            "/a%7F",
            "/api/ce/pods/p/a%0Aa/attach",
            "/a;b",
            "/a%3Bb",
            "/a%zz",
            "/a%4",
            "relative",
            "/a b",
            "/api/v1/namespaces/d/pods/x%2F..%2Fexec",
            "/ui/..%2fsecret.txt",
            "/a/%2F/../b",
            "/a//b%2Fc",
            "/a%2F.",
        ] {
            assert!(normalise(path).is_err(), "{path} should be refused");
        }
    }

    #[test]
    fn the_prefix_is_matched_by_segments_in_both_forms() {
        let path = ok("/%6B8s/api/v1/x%2Fy");
        assert_eq!(
            path.strip_prefix("/k8s/"),
            Some(RequestPath {
                judged: "/api/v1/x/y".into(),
                forwarded: "/api/v1/x%2Fy".into()
            })
        );
        assert_eq!(
            ok("/k8s").strip_prefix("/k8s/").map(|p| p.forwarded),
            Some("/".into())
        );
        assert_eq!(ok("/k8sfoo/api").strip_prefix("/k8s/"), None);
        assert_eq!(ok("/k8s%2Fapi").strip_prefix("/k8s/"), None);
        assert_eq!(ok("/api").strip_prefix("/"), Some(ok("/api")));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for path in [
            "/a/./b//c/../d/",
            "/%65xec",
            "/a%3ab",
            "/",
            "//",
            "/x/..",
            "/q/%2F",
        ] {
            let once = ok(path);
            assert_eq!(ok(&once.forwarded), once);
            assert_eq!(judged(&once.judged), once.judged);
        }
    }

    mod properties {
        use super::super::normalise;
        use proptest::prelude::*;

        /// Paths built from the characters that matter: separators, dots, escapes and the
        /// characters kprox refuses.
        fn path() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just("/"),
                    Just("."),
                    Just(".."),
                    Just("%"),
                    Just("%2e"),
                    Just("%2E"),
                    Just("%2f"),
                    Just("%65"),
                    Just("%00"),
                    Just(";"),
                    Just("\\"),
                    Just("exec"),
                    Just("pods"),
                    Just("a"),
                    Just("~"),
                    Just("%7e"),
                    Just("%zz"),
                ],
                0..24,
            )
            .prop_map(|parts| format!("/{}", parts.concat()))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            #[test]
            fn both_forms_are_canonical(raw in path()) {
                if let Ok(path) = normalise(&raw) {
                    for form in [&path.judged, &path.forwarded] {
                        prop_assert!(form.starts_with('/'), "{raw:?} → {path:?}");
                        prop_assert!(!form[1..].split('/').any(|s| s == "." || s == ".."), "{raw:?} → {path:?}");
                    }
                    prop_assert!(!path.judged.contains("//"), "{raw:?} → {path:?}");
                    // Forwarding again judges and forwards the same.
                    prop_assert_eq!(normalise(&path.forwarded), Ok(path.clone()), "not idempotent: {:?}", raw);
                }
            }

            #[test]
            fn plain_paths_are_never_refused_and_forwarded_as_sent(segments in proptest::collection::vec("[a-z0-9._~-]{1,8}", 0..8)) {
                let raw = format!("/{}", segments.join("/"));
                let has_dots = segments.iter().any(|s| s == "." || s == "..");
                let path = normalise(&raw);
                prop_assert!(path.is_ok(), "{raw:?}");
                if !has_dots {
                    prop_assert_eq!(path.map(|p| p.forwarded), Ok(raw));
                }
            }
        }
    }
}
