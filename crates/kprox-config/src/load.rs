//! Layering: built-in defaults < TOML file < `KPROX_*` environment < command-line flags.
//!
//! Environment variables use `__` between section and key: `KPROX_LISTEN__PORT=9000`,
//! `KPROX_UPSTREAM__SERVERS='["https://a:6443","https://b:6443"]'`.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::error::origin_of;
use crate::raw::RawConfig;
use crate::{Config, ConfigError, validate};

/// Prefix of the environment variables kprox reads.
pub const ENV_PREFIX: &str = "KPROX_";

/// Where configuration comes from.
#[derive(Clone, Debug, Default)]
pub struct Sources<'a> {
    /// The `--config` file, which must exist when given.
    pub file: Option<&'a Path>,
    /// Read `KPROX_*` environment variables.
    pub environment: bool,
    /// Values given as command-line flags (only the ones the user typed).
    pub flags: RawConfig,
}

/// Merges the sources and validates the result.
pub fn load(sources: &Sources<'_>) -> Result<Config, ConfigError> {
    let mut figment = Figment::new();
    if let Some(file) = sources.file {
        // Figment treats a missing file as empty; a file the user named must exist.
        if let Err(e) = std::fs::metadata(file) {
            return Err(ConfigError::new(
                file.display().to_string(),
                "",
                format!("cannot read the config file ({e})"),
                "check the path given to --config",
            ));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    if sources.environment {
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    }
    figment = figment.merge(Flags(Serialized::defaults(&sources.flags)));

    let raw: RawConfig = figment.extract().map_err(ConfigError::from_figment)?;
    let origins = |key: &str| match figment.find_metadata(key) {
        Some(metadata) => {
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            origin_of(metadata, &None, &path)
        }
        None => "built-in default".to_owned(),
    };
    validate(&raw, &origins)
}

/// Command-line flags as a figment source, so errors say "command-line flags".
struct Flags<T>(Serialized<T>);

impl<T: serde::Serialize> figment::Provider for Flags<T> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("command-line flags")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.0.data()
    }
}

/// Parses TOML text alone, with `name` standing for its file in errors (used by tests and
/// `kprox config check`).
pub fn parse_toml(name: &str, text: &str) -> Result<RawConfig, ConfigError> {
    Figment::from(Toml::string(text))
        .extract()
        .map_err(ConfigError::from_figment)
        .map_err(|mut e| {
            e.origin = name.to_owned();
            e
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn flags_override_the_file() {
        let file = file_with("[listen]\nport = 9000\naddress = \"127.0.0.2\"\n");
        let flags: RawConfig = toml::from_str("[listen]\nport = 9100\n").expect("raw");
        let config = load(&Sources {
            file: Some(file.path()),
            environment: false,
            flags,
        })
        .expect("valid");
        assert_eq!(config.listen.port, 9100);
        assert_eq!(config.listen.address.to_string(), "127.0.0.2");
    }

    #[test]
    fn an_unknown_key_names_the_file_and_the_key() {
        let file = file_with("[listen]\nprot = 9000\n");
        let error = load(&Sources {
            file: Some(file.path()),
            ..Default::default()
        })
        .expect_err("unknown key");
        assert_eq!(error.origin, file.path().display().to_string());
        assert_eq!(error.key, "listen.prot");
        assert!(error.fix.contains("port"), "{error}");
    }

    #[test]
    fn a_bad_value_names_its_file() {
        let file = file_with("[upstream]\nconnect_timeout = \"ten seconds\"\n");
        let error = load(&Sources {
            file: Some(file.path()),
            ..Default::default()
        })
        .expect_err("bad duration");
        assert_eq!(error.key, "upstream.connect_timeout");
        assert_eq!(error.origin, file.path().display().to_string());
    }

    #[test]
    fn a_regex_error_names_the_source_that_set_it() {
        let file = file_with("[filter]\nreject_methods = [\"[\"]\n");
        let error = load(&Sources {
            file: Some(file.path()),
            ..Default::default()
        })
        .expect_err("bad regex");
        assert_eq!(error.origin, file.path().display().to_string());
        assert_eq!(error.key, "filter.reject_methods");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let error = load(&Sources {
            file: Some(Path::new("/nonexistent/kprox.toml")),
            ..Default::default()
        })
        .expect_err("missing");
        assert_eq!(error.origin, "/nonexistent/kprox.toml");
    }

    #[test]
    fn malformed_toml_is_an_error_naming_the_file() {
        let file = file_with("[listen\nport = 1\n");
        let error = load(&Sources {
            file: Some(file.path()),
            ..Default::default()
        })
        .expect_err("malformed");
        assert_eq!(error.origin, file.path().display().to_string(), "{error}");
    }
}
