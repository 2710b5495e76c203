//! The header pipeline a request goes through on its way upstream: hop-by-hop removal (with
//! whatever `Connection` names), client credential removal, kprox's credential. Invariants:
//! exactly one `Authorization`, kprox's; no `Impersonate-*` and no `X-Remote-*` from the
//! client; no hop-by-hop header left.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, header};
use kprox_auth::Snapshot;
use kprox_listener::{hop_by_hop, sanitise};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // One header per line, `name: value`.
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    hop_by_hop::strip(&mut headers);
    sanitise::strip_client_credentials(&mut headers);
    let ours = HeaderValue::from_static("Bearer kprox-own");
    let snapshot = Snapshot {
        authorization: Some(ours.clone()),
        ..Default::default()
    };
    kprox_auth::inject(&mut headers, &snapshot);

    let authorizations: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
    assert_eq!(authorizations, [&ours]);
    for name in headers.keys() {
        let name = name.as_str();
        assert!(!name.starts_with("impersonate-"), "{name} survived");
        assert!(!name.starts_with("x-remote-"), "{name} survived");
        assert!(
            !matches!(
                name,
                "connection"
                    | "keep-alive"
                    | "proxy-connection"
                    | "te"
                    | "trailer"
                    | "transfer-encoding"
                    | "upgrade"
                    | "proxy-authorization"
                    | "proxy-authenticate"
            ),
            "{name} survived"
        );
    }
});
