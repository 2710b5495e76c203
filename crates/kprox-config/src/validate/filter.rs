//! `[filter]` and `[www]`: which requests are accepted, and the static files served beside the API.

use std::path::PathBuf;

use crate::ConfigError;
use crate::config::*;
use crate::raw::{RawFilter, RawWww};

use super::values::{Refusal, non_empty, slash_wrapped};

/// `[filter]`: kubectl proxy's defaults; every regex compiles.
pub(super) fn filter(err: &Refusal<'_>, filter: RawFilter) -> Result<FilterConfig, ConfigError> {
    let regexes = |key: &str, given: &Option<Vec<String>>, default: &[&str]| {
        let list: Vec<String> = match given {
            Some(list) => list.iter().filter(|r| !r.is_empty()).cloned().collect(),
            None => default.iter().map(|s| (*s).to_owned()).collect(),
        };
        for pattern in &list {
            if let Err(e) = regex::Regex::new(pattern) {
                let reason = e.to_string().lines().last().unwrap_or_default().to_owned();
                return Err(err(
                    key,
                    format!("`{pattern}` is not a valid regular expression ({reason})"),
                    "escape special characters such as `.` `[` `(` with a backslash",
                ));
            }
        }
        Ok(list)
    };
    let filter = FilterConfig {
        accept_hosts: regexes(
            "filter.accept_hosts",
            &filter.accept_hosts,
            DEFAULT_ACCEPT_HOSTS,
        )?,
        accept_paths: regexes(
            "filter.accept_paths",
            &filter.accept_paths,
            DEFAULT_ACCEPT_PATHS,
        )?,
        reject_paths: regexes(
            "filter.reject_paths",
            &filter.reject_paths,
            DEFAULT_REJECT_PATHS,
        )?,
        reject_methods: regexes(
            "filter.reject_methods",
            &filter.reject_methods,
            DEFAULT_REJECT_METHODS,
        )?,
        disable: filter.disable.unwrap_or(false),
        pass_client_credentials: filter.pass_client_credentials.unwrap_or(false),
    };
    Ok(filter)
}

/// `[www]`: a directory, and a prefix wrapped in slashes.
pub(super) fn www(www: RawWww) -> WwwConfig {
    WwwConfig {
        dir: non_empty(www.dir.as_deref()).map(PathBuf::from),
        prefix: slash_wrapped(www.prefix.as_deref().unwrap_or(DEFAULT_WWW_PREFIX)),
    }
}
