//! What the fuzz targets share: kubectl proxy's default filters, compiled once.

use kprox_config::{
    DEFAULT_ACCEPT_HOSTS, DEFAULT_ACCEPT_PATHS, DEFAULT_REJECT_METHODS, DEFAULT_REJECT_PATHS,
    FilterConfig,
};
use kprox_listener::Filter;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// kubectl proxy's default filters, compiled once.
pub fn default_filter() -> &'static Filter {
    static FILTER: std::sync::OnceLock<Filter> = std::sync::OnceLock::new();
    FILTER.get_or_init(|| {
        Filter::new(&FilterConfig {
            accept_hosts: strings(DEFAULT_ACCEPT_HOSTS),
            accept_paths: strings(DEFAULT_ACCEPT_PATHS),
            reject_paths: strings(DEFAULT_REJECT_PATHS),
            reject_methods: strings(DEFAULT_REJECT_METHODS),
            disable: false,
            pass_client_credentials: false,
        })
        .expect("the default filters compile")
    })
}
