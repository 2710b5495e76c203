//! The path normaliser and the default filters together. Invariants: a normalised path starts
//! with `/`, has no `//`, `.` or `..` segment and no escape that changes meaning, normalises to
//! itself; and whatever the encoding, an exec or attach path is never accepted.
#![no_main]

use http::{HeaderMap, HeaderValue, Method, header};
use kprox_listener::normalise::normalise;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = normalise(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} → {path:?}");
    assert!(!path.contains("//"), "{raw:?} → {path:?}");
    for segment in path.split('/') {
        assert!(segment != "." && segment != "..", "{raw:?} → {path:?}");
    }
    assert_eq!(
        normalise(&path).as_deref(),
        Ok(path.as_str()),
        "not idempotent: {raw:?}"
    );

    let filter = kprox_fuzz::default_filter();
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8001"));
    let accepted = filter
        .check(&Method::GET, &path, &headers, None, false)
        .is_ok();
    // The apiserver's exec and attach routes: `/api/VERSION/...`, a `pods` segment, a pod
    // name, and later an `exec` or `attach` segment (paths are case-sensitive upstream).
    let segments: Vec<&str> = path.split('/').collect();
    let exec_like = path.starts_with("/api/")
        && segments.iter().enumerate().any(|(i, s)| {
            i >= 3
                && *s == "pods"
                && segments
                    .iter()
                    .skip(i + 2)
                    .any(|s| *s == "exec" || *s == "attach")
        });
    assert!(
        !(accepted && exec_like),
        "exec route accepted: {raw:?} → {path:?}"
    );
});
