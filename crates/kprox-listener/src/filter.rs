//! Which requests kprox lets through: kubectl proxy's filter, evaluated in kubectl's order
//! (reject-paths, then reject-methods, then accept-paths AND accept-hosts), with its holes
//! closed:
//!
//! - the Host is compared with its port removed correctly, IPv6 included (`[::1]:8001`);
//! - an absolute-form request target must name the same authority as the Host header;
//! - methods are compared case-insensitively, and so are `--reject-paths` (refusing
//!   `pods/x/EXEC` costs nothing: no apiserver route differs from another only by case);
//! - browser requests from another site are refused for unsafe methods and upgrades
//!   (`Sec-Fetch-Site: cross-site`, or an `Origin` whose host is not an accepted host).
//!
//! The path given to [`Filter::check`] is the judged one (see `normalise.rs`): decoded and
//! normalised, as the apiserver reads the path kprox forwards.

use http::{HeaderMap, Method, StatusCode, header};
use kprox_config::FilterConfig;
use regex::{Regex, RegexBuilder};

/// A refused request: the status to answer and which rule refused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    /// A short stable name of the rule, for metrics: `reject-paths`, `accept-hosts`, ...
    pub rule: &'static str,
    /// A sentence for the client, naming the rule and the pattern.
    pub message: String,
}

/// A compiled filter.
#[derive(Clone, Debug)]
pub struct Filter {
    accept_hosts: Vec<Regex>,
    accept_paths: Vec<Regex>,
    reject_paths: Vec<Regex>,
    reject_methods: Vec<Regex>,
    disabled: bool,
}

fn compile(patterns: &[String], case_insensitive: bool) -> Result<Vec<Regex>, regex::Error> {
    patterns
        .iter()
        .map(|p| {
            RegexBuilder::new(p)
                .case_insensitive(case_insensitive)
                .build()
        })
        .collect()
}

fn first_match<'a>(regexes: &'a [Regex], text: &str) -> Option<&'a Regex> {
    regexes.iter().find(|r| r.is_match(text))
}

/// The host part of a `Host` header or authority, lower-cased, with the port removed; IPv6
/// literals keep their brackets (`[::1]`), as kubectl's default accept list expects.
pub fn host_of(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &authority[..end + 2];
        (host, &rest[end + 1..])
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) => (host, &authority[host.len()..]),
            None => (authority, ""),
        }
    };
    let port_ok = port.is_empty()
        || (port.len() > 1
            && port.starts_with(':')
            && port[1..].bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty() && !host.contains(':') || host.starts_with('[');
    (port_ok && host_ok && !host.contains(['@', '/', ' '])).then(|| host.to_ascii_lowercase())
}

/// Methods a browser may send cross-site without a preflight and that do not change anything.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Filter {
    /// Compiles the configured patterns (already validated by kprox-config).
    pub fn new(config: &FilterConfig) -> Result<Self, regex::Error> {
        Ok(Self {
            accept_hosts: compile(&config.accept_hosts, true)?,
            accept_paths: compile(&config.accept_paths, false)?,
            reject_paths: compile(&config.reject_paths, true)?,
            reject_methods: compile(&config.reject_methods, true)?,
            disabled: config.disable,
        })
    }

    /// Adds an accepted host (a pod IP kprox is bound to), matched exactly.
    pub fn accept_host_exactly(&mut self, host: &str) {
        if let Ok(regex) = Regex::new(&format!("^{}$", regex::escape(&host.to_ascii_lowercase()))) {
            self.accept_hosts.push(regex);
        }
    }

    /// Judges a request. `path` is the judged form and has the API prefix removed; `target_authority`
    /// is the authority of an absolute-form request target, if any; `upgrade` says whether the
    /// request asks for a protocol upgrade.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        target_authority: Option<&str>,
        upgrade: bool,
    ) -> Result<(), Rejection> {
        if self.disabled {
            return Ok(());
        }
        let forbid = |rule: &'static str, message: String| {
            Err(Rejection {
                status: StatusCode::FORBIDDEN,
                rule,
                message,
            })
        };

        let mut hosts = headers.get_all(header::HOST).iter();
        let host_header = match (hosts.next(), hosts.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        };
        let Some(host) = host_header.and_then(host_of) else {
            return forbid(
                "host",
                "kprox refused this request: it needs exactly one valid Host header".to_owned(),
            );
        };
        if let Some(target) = target_authority
            && host_of(target).as_deref() != Some(host.as_str())
        {
            return forbid("host", "kprox refused this request: the request target's authority differs from the Host header".to_owned());
        }

        if let Some(rule) = first_match(&self.reject_paths, path) {
            return forbid(
                "reject-paths",
                format!(
                    "kprox refused this request: the path matches --reject-paths `{}`",
                    rule.as_str()
                ),
            );
        }
        if let Some(rule) = first_match(&self.reject_methods, method.as_str()) {
            return forbid(
                "reject-methods",
                format!(
                    "kprox refused this request: the method matches --reject-methods `{}`",
                    rule.as_str()
                ),
            );
        }
        if first_match(&self.accept_paths, path).is_none() {
            return forbid(
                "accept-paths",
                "kprox refused this request: the path matches no --accept-paths pattern".to_owned(),
            );
        }
        if first_match(&self.accept_hosts, &host).is_none() {
            return forbid(
                "accept-hosts",
                format!(
                    "kprox refused this request: the host `{host}` matches no --accept-hosts pattern"
                ),
            );
        }

        if upgrade || !is_safe(method) {
            if headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
            {
                return forbid("cross-site", "kprox refused this request: a cross-site browser request may not change anything or open a stream".to_owned());
            }
            if let Some(origin) = headers.get(header::ORIGIN) {
                let origin_host = origin
                    .to_str()
                    .ok()
                    .and_then(|o| o.split_once("://"))
                    .and_then(|(_, rest)| host_of(rest));
                let trusted =
                    origin_host.is_some_and(|h| first_match(&self.accept_hosts, &h).is_some());
                if !trusted {
                    return forbid(
                        "origin",
                        "kprox refused this request: its Origin is not an accepted host".to_owned(),
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn defaults() -> Filter {
        let raw = kprox_config::RawConfig::default();
        let config = kprox_config::validate(&raw, &|_: &str| String::new()).expect("defaults");
        Filter::new(&config.filter).expect("compiles")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn rule(result: Result<(), Rejection>) -> &'static str {
        result.err().map_or("allowed", |r| r.rule)
    }

    #[test]
    fn host_ports_are_removed_correctly() {
        assert_eq!(host_of("localhost:8001").as_deref(), Some("localhost"));
        assert_eq!(host_of("[::1]:8001").as_deref(), Some("[::1]"));
        assert_eq!(host_of("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(host_of("LOCALHOST").as_deref(), Some("localhost"));
        assert_eq!(host_of("127.0.0.1:").as_deref(), None);
        assert_eq!(host_of("::1").as_deref(), None);
        assert_eq!(host_of("evil.com:80@localhost").as_deref(), None);
        assert_eq!(host_of("").as_deref(), None);
    }

    #[test]
    fn the_default_hosts_are_loopback_names_only() {
        let filter = defaults();
        for host in [
            "localhost:8001",
            "127.0.0.1:8001",
            "[::1]:8001",
            "localhost",
        ] {
            let h = headers(&[("host", host)]);
            assert_eq!(
                rule(filter.check(&Method::GET, "/api", &h, None, false)),
                "allowed",
                "{host}"
            );
        }
        for host in [
            "evil.example:8001",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
        ] {
            let h = headers(&[("host", host)]);
            assert_eq!(
                rule(filter.check(&Method::GET, "/api", &h, None, false)),
                "accept-hosts",
                "{host}"
            );
        }
        assert_eq!(
            rule(filter.check(&Method::GET, "/api", &HeaderMap::new(), None, false)),
            "host"
        );
        let two = headers(&[("host", "localhost"), ("host", "evil.example")]);
        assert_eq!(
            rule(filter.check(&Method::GET, "/api", &two, None, false)),
            "host"
        );
    }

    #[test]
    fn an_absolute_target_must_agree_with_host() {
        let filter = defaults();
        let h = headers(&[("host", "localhost:8001")]);
        assert_eq!(
            rule(filter.check(&Method::GET, "/api", &h, Some("localhost:8001"), false)),
            "allowed"
        );
        assert_eq!(
            rule(filter.check(&Method::GET, "/api", &h, Some("evil.example"), false)),
            "host"
        );
    }

    #[test]
    fn exec_and_attach_are_rejected_by_default_in_kubectls_order() {
        let filter = defaults();
        let h = headers(&[("host", "localhost")]);
        for path in [
            "/api/v1/namespaces/d/pods/p/exec",
            "/api/v1/namespaces/d/pods/p/attach",
            "/api/v1/namespaces/d/pods/p/exec/",
        ] {
            assert_eq!(
                rule(filter.check(&Method::POST, path, &h, None, false)),
                "reject-paths",
                "{path}"
            );
        }
        assert_eq!(
            rule(filter.check(
                &Method::GET,
                "/api/v1/namespaces/d/pods/p/log",
                &h,
                None,
                false
            )),
            "allowed"
        );
    }

    #[test]
    fn methods_are_compared_case_insensitively() {
        let config = FilterConfig {
            reject_methods: vec!["^POST$".into()],
            ..defaults_config()
        };
        let filter = Filter::new(&config).expect("compiles");
        let h = headers(&[("host", "localhost")]);
        let lower = Method::from_bytes(b"post").expect("method");
        assert_eq!(
            rule(filter.check(&lower, "/api", &h, None, false)),
            "reject-methods"
        );
        assert_eq!(
            rule(filter.check(&Method::POST, "/api", &h, None, false)),
            "reject-methods"
        );
    }

    fn defaults_config() -> FilterConfig {
        let raw = kprox_config::RawConfig::default();
        kprox_config::validate(&raw, &|_: &str| String::new())
            .expect("defaults")
            .filter
    }

    #[test]
    fn cross_site_browsers_may_read_but_not_write_or_upgrade() {
        let filter = defaults();
        let cross = headers(&[("host", "localhost"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(
            rule(filter.check(&Method::GET, "/api", &cross, None, false)),
            "allowed"
        );
        assert_eq!(
            rule(filter.check(&Method::POST, "/api", &cross, None, false)),
            "cross-site"
        );
        assert_eq!(
            rule(filter.check(&Method::GET, "/api", &cross, None, true)),
            "cross-site"
        );
        let foreign = headers(&[("host", "localhost"), ("origin", "https://evil.example")]);
        assert_eq!(
            rule(filter.check(&Method::DELETE, "/api", &foreign, None, false)),
            "origin"
        );
        assert_eq!(
            rule(filter.check(&Method::GET, "/api", &foreign, None, true)),
            "origin"
        );
        let null = headers(&[("host", "localhost"), ("origin", "null")]);
        assert_eq!(
            rule(filter.check(&Method::PUT, "/api", &null, None, false)),
            "origin"
        );
        let own = headers(&[
            ("host", "localhost:8001"),
            ("origin", "http://localhost:8001"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(
            rule(filter.check(&Method::POST, "/api", &own, None, false)),
            "allowed"
        );
    }

    #[test]
    fn disable_lets_everything_through() {
        let config = FilterConfig {
            disable: true,
            ..defaults_config()
        };
        let filter = Filter::new(&config).expect("compiles");
        let h = headers(&[("host", "evil.example"), ("origin", "https://evil.example")]);
        assert_eq!(
            rule(filter.check(
                &Method::POST,
                "/api/v1/namespaces/d/pods/p/exec",
                &h,
                None,
                true
            )),
            "allowed"
        );
    }
}

#[cfg(test)]
mod pod_ip_tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_pod_ip_kprox_is_bound_to_becomes_an_accepted_host() {
        let raw = kprox_config::RawConfig::default();
        let config = kprox_config::validate(&raw, &|_: &str| String::new()).expect("defaults");
        let mut filter = Filter::new(&config.filter).expect("compiles");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("10.1.2.3:8001"));
        assert!(
            filter
                .check(&Method::GET, "/api", &headers, None, false)
                .is_err()
        );
        filter.accept_host_exactly("10.1.2.3");
        assert!(
            filter
                .check(&Method::GET, "/api", &headers, None, false)
                .is_ok()
        );
        headers.insert(header::HOST, HeaderValue::from_static("10.1.2.30"));
        assert!(
            filter
                .check(&Method::GET, "/api", &headers, None, false)
                .is_err(),
            "matched exactly, not as a prefix"
        );
    }
}
