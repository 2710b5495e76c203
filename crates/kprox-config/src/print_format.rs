//! How `kprox config print` writes values the TOML file spells differently from their type:
//! unset paths and strings as empty, a disabled address as `off`, secrets redacted.

use std::path::{Path, PathBuf};

use serde::Serializer;

/// Prints an optional path as kubectl prints an unset string flag: empty.
pub(crate) fn path_or_empty<S: Serializer>(
    value: &Option<PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(
        &value
            .as_deref()
            .map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default(),
    )
}

/// Prints a disabled address as `off`.
pub(crate) fn addr_or_off<S: Serializer>(
    value: &Option<std::net::SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(addr) => s.collect_str(addr),
        None => s.serialize_str("off"),
    }
}

/// Prints a path.
pub(crate) fn path_buf<S: Serializer>(value: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&value.display())
}

/// Prints a secret as `<redacted>` when set, empty when not.
pub(crate) fn redacted<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if value.is_some() { "<redacted>" } else { "" })
}

/// Prints an optional string as empty when unset.
pub(crate) fn string_or_empty<S: Serializer>(
    value: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_deref().unwrap_or_default())
}

/// Prints a duration that is off when unset as the `0s` that turns it off.
pub(crate) fn duration_or_zero<S: Serializer>(
    value: &Option<crate::GoDuration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&value.unwrap_or_default())
}
