//! Host and absolute-form authority matching against the default accept list. Invariant: a
//! request is accepted only if its host, as kprox reads it, is a loopback name — whatever
//! bytes surround it (userinfo, ports, brackets, case, spaces).
#![no_main]

use http::{HeaderMap, HeaderValue, Method, header};
use kprox_listener::filter::host_of;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First line: the Host header; second line, if any: the absolute-form authority.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(2, '\n');
    let host = lines.next().unwrap_or_default();
    let target = lines.next();
    if let Some(parsed) = host_of(host) {
        assert_eq!(parsed, parsed.to_ascii_lowercase());
        assert!(!parsed.contains(['@', '/', ' ']), "{host:?} → {parsed:?}");
    }
    let Ok(value) = HeaderValue::from_str(host) else {
        return;
    };
    let filter = kprox_fuzz::default_filter();
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, value);
    let accepted = filter
        .check(&Method::GET, "/api/v1/pods", &headers, target, false)
        .is_ok();
    if accepted {
        let loopback = ["localhost", "127.0.0.1", "[::1]"];
        let read = host_of(host);
        assert!(
            read.as_deref().is_some_and(|h| loopback.contains(&h)),
            "accepted Host {host:?} read as {read:?}"
        );
        if let Some(target) = target {
            let read = host_of(target);
            assert!(
                read.as_deref().is_some_and(|h| loopback.contains(&h)),
                "accepted target {target:?} read as {read:?}"
            );
        }
    }
});
