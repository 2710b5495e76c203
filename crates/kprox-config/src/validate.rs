//! Raw configuration in, validated configuration out: defaults applied, values checked, every
//! refusal naming the source, the key and the fix.

use crate::ConfigError;
use crate::config::{ClientCredentials, Config};
use crate::raw::RawConfig;

mod filter;
mod kubeconfig;
mod listen;
mod process;
mod upstream;
mod values;

/// Tells which source set a key, for error messages.
pub trait OriginOf {
    /// A user-facing name for the source of `key` (dotted), e.g. a file path.
    fn origin_of(&self, key: &str) -> String;
}

impl<F: Fn(&str) -> String> OriginOf for F {
    fn origin_of(&self, key: &str) -> String {
        self(key)
    }
}

/// Applies defaults and checks every value.
pub fn validate(raw: &RawConfig, origins: &dyn OriginOf) -> Result<Config, ConfigError> {
    let err = |key: &str, problem: String, fix: &str| {
        ConfigError::new(origins.origin_of(key), key, problem, fix)
    };

    let listen = listen::listen(&err, raw.listen.clone().unwrap_or_default())?;
    let filter = filter::filter(&err, raw.filter.clone().unwrap_or_default())?;
    let www = filter::www(raw.www.clone().unwrap_or_default());
    let kubeconfig = kubeconfig::kubeconfig(&err, raw.kubeconfig.clone().unwrap_or_default())?;
    let upstream = upstream::upstream(&err, raw.upstream.clone().unwrap_or_default())?;
    let log = process::log(&err, raw.log.clone().unwrap_or_default())?;
    let admin = process::admin(&err, raw.admin.clone().unwrap_or_default())?;
    let runtime = process::runtime(&err, raw.runtime.clone().unwrap_or_default())?;

    if listen.client_credentials == ClientCredentials::Forward && filter.pass_client_credentials {
        return Err(err(
            "listen.client_credentials",
            "forward and filter.pass_client_credentials were both set".to_owned(),
            "choose one: forward never adds kprox's credentials, pass_client_credentials adds them when a client sends none",
        ));
    }
    let passthrough = upstream::passthrough(&err, raw.passthrough.clone().unwrap_or_default())?;

    Ok(Config {
        listen,
        filter,
        www,
        kubeconfig,
        upstream,
        log,
        admin,
        runtime,
        passthrough,
    })
}

#[cfg(test)]
mod tests {
    use super::values::slash_wrapped;
    use super::*;
    use crate::DEFAULT_REJECT_PATHS;
    use crate::raw::{RawFilter, RawListen, RawUpstream};

    fn origin(_: &str) -> String {
        "test.toml".to_owned()
    }

    #[test]
    fn defaults_match_kubectl_proxy() {
        let config = validate(&RawConfig::default(), &origin).expect("defaults are valid");
        assert_eq!(config.listen.address.to_string(), "127.0.0.1");
        assert_eq!(config.listen.port, 8001);
        assert_eq!(config.listen.api_prefix, "/");
        assert_eq!(config.www.prefix, "/static/");
        assert_eq!(config.filter.reject_paths, DEFAULT_REJECT_PATHS);
        assert!(!config.filter.pass_client_credentials);
    }

    #[test]
    fn a_bad_regex_names_the_file_the_key_and_the_fix() {
        let raw = RawConfig {
            filter: Some(RawFilter {
                accept_hosts: Some(vec!["^ok$".into(), "(unclosed".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let error = validate(&raw, &origin).expect_err("must refuse");
        assert_eq!(error.key, "filter.accept_hosts");
        let line = error.to_string();
        assert!(
            line.starts_with("test.toml: key `filter.accept_hosts`: `(unclosed`"),
            "{line}"
        );
        assert!(line.contains("fix:"), "{line}");
    }

    #[test]
    fn a_remote_address_needs_an_explicit_opt_in() {
        let mut raw = RawConfig {
            listen: Some(RawListen {
                address: Some("0.0.0.0".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            validate(&raw, &origin).expect_err("refused").key,
            "listen.address"
        );
        if let Some(listen) = raw.listen.as_mut() {
            listen.insecure_allow_unauthenticated_remote = Some(true);
        }
        assert!(
            validate(&raw, &origin)
                .expect("allowed")
                .listen
                .insecure_allow_unauthenticated_remote
        );
    }

    #[test]
    fn unix_socket_with_a_custom_port_is_refused() {
        let raw = RawConfig {
            listen: Some(RawListen {
                unix_socket: Some("/tmp/k.sock".into()),
                port: Some(9000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let error = validate(&raw, &origin).expect_err("must refuse");
        assert_eq!(error.key, "listen.unix_socket");
    }

    #[test]
    fn comma_separated_servers_are_split_and_checked() {
        let raw = RawConfig {
            upstream: Some(RawUpstream {
                servers: Some(vec!["https://a:6443, https://b:6443".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = validate(&raw, &origin).expect("valid");
        assert_eq!(
            config.upstream.servers,
            ["https://a:6443", "https://b:6443"]
        );

        let raw = RawConfig {
            upstream: Some(RawUpstream {
                servers: Some(vec!["ftp://a".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            validate(&raw, &origin).expect_err("bad scheme").key,
            "upstream.servers"
        );
    }

    #[test]
    fn prefixes_are_wrapped_in_slashes() {
        assert_eq!(slash_wrapped("api"), "/api/");
        assert_eq!(slash_wrapped("/api"), "/api/");
        assert_eq!(slash_wrapped(""), "/");
        assert_eq!(slash_wrapped("/"), "/");
    }
}
