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
