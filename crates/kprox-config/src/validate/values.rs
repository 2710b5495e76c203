//! Checks shared by the sections: positive durations, empty meaning unset, prefixes, URLs.

use crate::{ConfigError, GoDuration};

/// How a section says no: the key, the problem, the fix (`validate` adds the source).
pub(super) type Refusal<'a> = dyn Fn(&str, String, &str) -> ConfigError + 'a;

/// A duration that must not be zero.
pub(super) fn positive_duration(
    err: &Refusal<'_>,
    key: &str,
    value: Option<GoDuration>,
    default: GoDuration,
) -> Result<GoDuration, ConfigError> {
    let value = value.unwrap_or(default);
    if value.is_zero() {
        return Err(err(
            key,
            "0s would end every connection at once".to_owned(),
            &format!("write a positive duration (default {default})"),
        ));
    }
    Ok(value)
}

/// A count as the components use it (lossless: a `u32` always fits a 64-bit `usize`).
pub(super) fn count(value: u32) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// `0s` means "off".
pub(super) fn zero_is_off(value: GoDuration) -> Option<GoDuration> {
    (!value.is_zero()).then_some(value)
}

/// Empty strings mean "unset", as kubectl's string flags do.
pub(super) fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

/// `api` → `/api/`, `` → `/`.
pub(super) fn slash_wrapped(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

pub(super) fn check_server_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("`{text}` must start with https:// or http://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not carry a query or fragment"));
    }
    Ok(())
}
