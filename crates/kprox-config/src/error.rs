//! The one error type of the configuration crate: it names where the bad value came from
//! (a file, an environment variable, a flag), the key, what is wrong and how to fix it.

use std::fmt;

/// A configuration problem, printed as one line a user can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the value came from: a file path, `environment variable KPROX_X`, `flag --x`.
    pub origin: String,
    /// The dotted key, like `listen.port`; empty when the problem is the whole source.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// Builds an error about one key.
    pub fn new(
        origin: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            origin: origin.into(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Translates figment's error (which knows the source and key) into ours, keeping only the
    /// first of several errors: one clear line beats a list.
    pub(crate) fn from_figment(error: figment::Error) -> Self {
        use figment::error::Kind;

        let mut key = error.path.join(".");
        let origin = match &error.metadata {
            Some(metadata) => origin_of(metadata, &error.profile, &error.path),
            None => "configuration".to_owned(),
        };
        let (problem, fix) = match &error.kind {
            Kind::UnknownField(field, expected) => {
                // figment usually puts the field in the path already; make sure it is there.
                if error.path.last() != Some(field) {
                    key = if key.is_empty() {
                        field.clone()
                    } else {
                        format!("{key}.{field}")
                    };
                }
                (
                    "unknown key".to_owned(),
                    format!(
                        "remove it or use one of: {} (see config/kprox.toml)",
                        expected.join(", ")
                    ),
                )
            }
            Kind::InvalidType(actual, expected) => (
                format!("found {actual}, expected {}", plain(expected)),
                format!("write {}", plain(expected)),
            ),
            Kind::InvalidValue(actual, expected) => (
                format!("invalid value {actual}, expected {expected}"),
                format!("write {expected}"),
            ),
            Kind::Message(message) => (
                message.clone(),
                "correct the value as described (config/kprox.toml documents every key)".to_owned(),
            ),
            other => (
                other.to_string(),
                "see config/kprox.toml for the expected form".to_owned(),
            ),
        };
        Self {
            origin,
            key,
            problem,
            fix,
        }
    }
}

/// Describes a figment source as a user would name it.
pub(crate) fn origin_of(
    metadata: &figment::Metadata,
    profile: &Option<figment::Profile>,
    path: &[String],
) -> String {
    match &metadata.source {
        Some(figment::Source::File(file)) => file.display().to_string(),
        _ if metadata.name.contains("environment") => {
            let _ = profile;
            let name: Vec<String> = path.iter().map(|p| p.to_ascii_uppercase()).collect();
            format!(
                "environment variable {}{}",
                crate::ENV_PREFIX,
                name.join("__")
            )
        }
        _ => metadata.name.to_string(),
    }
}

/// Serde's type names in words a user reads.
fn plain(expected: &str) -> String {
    match expected {
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u32" => "a whole number".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        "a sequence" => "a list such as [\"a\", \"b\"]".to_owned(),
        other => format!("a {other}")
            .replace("a a ", "a ")
            .replace("a an ", "an "),
    }
}
