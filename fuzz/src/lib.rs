//! What the fuzz targets share: kubectl proxy's default filters, compiled once.

use kprox_config::FilterConfig;
use kprox_listener::Filter;

/// kubectl proxy's default filters, compiled once.
pub fn default_filter() -> &'static Filter {
    static FILTER: std::sync::OnceLock<Filter> = std::sync::OnceLock::new();
    FILTER.get_or_init(|| {
        Filter::new(&FilterConfig::kubectl_defaults()).expect("the default filters compile")
    })
}

/// `path` with every percent-escape decoded, as Go's `URL.Path` reads it (invalid UTF-8
/// replaced; the fuzz targets only look for ASCII segments in it).
pub fn decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|b| char::from(*b).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
