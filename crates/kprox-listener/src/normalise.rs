//! The path kprox judges is exactly the path it forwards.
//!
//! Before any filter runs, the request path is put into one canonical form: percent-encoded
//! unreserved characters are decoded (`%65xec` → `exec`), other escapes get upper-case hex,
//! `//` runs are merged, and `.` / `..` segments are removed (RFC 3986 §5.2.4). Forms whose
//! meaning differs between servers — encoded slashes or backslashes, NUL, raw backslashes,
//! `;` parameters, malformed escapes — are refused outright: there is no canonical form to judge.

use std::fmt;

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmbiguousPath(&'static str);

impl fmt::Display for AmbiguousPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
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

/// Returns the canonical form of `path` (which must start with `/`), or why it has none.
pub fn normalise(path: &str) -> Result<String, AmbiguousPath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(AmbiguousPath("the path must start with `/`"));
    }
    // Pass 1: escapes and forbidden characters.
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match byte {
            b'%' => {
                let (Some(high), Some(low)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(AmbiguousPath(
                        "the path contains a malformed percent-escape",
                    ));
                };
                let value = high * 16 + low;
                match value {
                    b'/' => return Err(AmbiguousPath("the path contains an encoded slash (%2F)")),
                    b'\\' => {
                        return Err(AmbiguousPath(
                            "the path contains an encoded backslash (%5C)",
                        ));
                    }
                    0 => return Err(AmbiguousPath("the path contains an encoded NUL (%00)")),
                    b';' => return Err(AmbiguousPath("the path contains an encoded `;` (%3B)")),
                    v if is_unreserved(v) => decoded.push(char::from(v)),
                    v => {
                        decoded.push('%');
                        decoded.push(char::from(b"0123456789ABCDEF"[usize::from(v >> 4)]));
                        decoded.push(char::from(b"0123456789ABCDEF"[usize::from(v & 15)]));
                    }
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
            _ => {
                decoded.push(char::from(byte));
                i += 1;
            }
        }
    }
    // Pass 2: segments. Empty segments (from `//`) and `.` vanish; `..` removes the previous
    // segment and never climbs above the root.
    let trailing_slash = decoded.len() > 1
        && (decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/.."));
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> String {
        normalise(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn canonical_paths_are_unchanged() {
        for path in [
            "/",
            "/api",
            "/api/v1/namespaces/default/pods",
            "/api/v1/pods/",
            "/apis/apps/v1",
            "/a%20b",
            "/x~y_z-1.2",
        ] {
            assert_eq!(ok(path), path);
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(
            ok("/api/v1/namespaces/d/pods/p/%65xec"),
            "/api/v1/namespaces/d/pods/p/exec"
        );
        assert_eq!(ok("/%61%70%69"), "/api");
        assert_eq!(ok("/a%2eb"), "/a.b");
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
        assert_eq!(ok("/a%c3%a9"), "/a%C3%A9");
    }

    #[test]
    fn dot_segments_and_double_slashes_are_resolved() {
        assert_eq!(ok("//api//v1"), "/api/v1");
        assert_eq!(ok("/api/./v1"), "/api/v1");
        assert_eq!(
            ok("/api/v1/namespaces/d/pods/p/x/../exec"),
            "/api/v1/namespaces/d/pods/p/exec"
        );
        assert_eq!(ok("/api/%2e%2e/api/v1"), "/api/v1");
        assert_eq!(ok("/../../etc"), "/etc");
        assert_eq!(ok("/api/.."), "/");
        assert_eq!(ok("/api/v1/."), "/api/v1/");
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        for path in [
            "/api%2Fv1",
            "/api%2fv1",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a;b",
            "/a%3Bb",
            "/a%zz",
            "/a%4",
            "relative",
            "/a b",
        ] {
            assert!(normalise(path).is_err(), "{path} should be refused");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for path in ["/a/./b//c/../d/", "/%65xec", "/a%3ab", "/", "//", "/x/.."] {
            let once = ok(path);
            assert_eq!(ok(&once), once);
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
            fn a_normalised_path_is_canonical(raw in path()) {
                if let Ok(path) = normalise(&raw) {
                    prop_assert!(path.starts_with('/'), "{raw:?} → {path:?}");
                    prop_assert!(!path.contains("//"), "{raw:?} → {path:?}");
                    for segment in path.split('/') {
                        prop_assert!(segment != "." && segment != "..", "{raw:?} → {path:?}");
                    }
                    prop_assert_eq!(normalise(&path), Ok(path.clone()), "not idempotent: {:?}", raw);
                }
            }

            #[test]
            fn plain_paths_are_never_refused(segments in proptest::collection::vec("[a-z0-9._~-]{1,8}", 0..8)) {
                let raw = format!("/{}", segments.join("/"));
                prop_assert!(normalise(&raw).is_ok(), "{raw:?}");
            }
        }
    }
}
