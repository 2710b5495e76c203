//! The path normaliser and the default filters together. Invariants: both forms of a path
//! start with `/` and have no `.` or `..` segment, the judged form no `//`; normalising the
//! forwarded form gives the same two forms; and whatever the encoding, a path the apiserver
//! would read as an exec or attach route is never accepted.
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
    for form in [&path.judged, &path.forwarded] {
        assert!(form.starts_with('/'), "{raw:?} → {path:?}");
        for segment in form[1..].split('/') {
            assert!(segment != "." && segment != "..", "{raw:?} → {path:?}");
        }
    }
    assert!(!path.judged.contains("//"), "{raw:?} → {path:?}");
    assert_eq!(
        normalise(&path.forwarded).as_ref(),
        Ok(&path),
        "not idempotent: {raw:?}"
    );

    let filter = kprox_fuzz::default_filter();
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8001"));
    let accepted = filter
        .check(&Method::GET, &path.judged, &headers, None, false)
        .is_ok();
    // The apiserver's exec and attach routes, as it reads the forwarded path (every escape
    // decoded, Go's `URL.Path`): `/api/VERSION/...`, a `pods` segment, a pod name, and later
    // an `exec` or `attach` segment, empty segments skipped.
    let read = kprox_fuzz::decoded(&path.forwarded);
    let segments: Vec<&str> = read.split('/').filter(|s| !s.is_empty()).collect();
    let exec_like = read.starts_with("/api/")
        && segments.iter().enumerate().any(|(i, s)| {
            i >= 2
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
