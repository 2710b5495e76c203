//! `kprox kubeconfig`: a kubeconfig that reaches every context through one kprox started with
//! `--all-contexts` — one context per kubeconfig context, same names and namespaces, its server
//! `http://<kprox's address>/clusters/<context>`, no credentials (kprox adds each context's
//! own), the current context kept. kubectl, k9s, Lens and client libraries then need nothing
//! but `KUBECONFIG=~/.kube/kprox.yaml`; kubectl's discovery cache, keyed by the server URL,
//! stays per context.

use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::Context as _;
use kprox_config::Config;

/// Prints the kubeconfig for the kprox `config` describes (the same flags and file as the
/// `kprox` it is for).
pub fn print(config: anyhow::Result<Config>) -> anyhow::Result<()> {
    let config = config?;
    let base = base_url(&config)?;
    let list =
        kprox_auth::contexts(&config.kubeconfig).context("reading the kubeconfig's contexts")?;
    print!("{}", render(&list, &base));
    Ok(())
}

/// `http://HOST:PORT` of the listener `config` describes.
fn base_url(config: &Config) -> anyhow::Result<String> {
    if let Some(path) = &config.listen.unix_socket {
        anyhow::bail!(
            "kprox serves on the unix socket {}: a kubeconfig's server cannot name a unix socket (kubectl and client-go dial TCP); fix: run kprox on a TCP port (--port) for these clients",
            path.display()
        );
    }
    if config.listen.port == 0 {
        anyhow::bail!(
            "--port 0 picks a free port when kprox starts, so no kubeconfig can name it; fix: give kprox and `kprox kubeconfig` the same --port"
        );
    }
    let host = match config.listen.address {
        address if address.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let prefix = config.listen.api_prefix.trim_end_matches('/');
    Ok(format!("http://{host}:{}{prefix}", config.listen.port))
}

/// The kubeconfig text: JSON-quoted strings (valid YAML), so no context name can break it.
fn render(list: &kprox_auth::ContextList, base: &str) -> String {
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let mut out = String::from(
        "# Written by `kprox kubeconfig`: every context reaches its cluster through kprox\n\
         # (--all-contexts), which adds that context's credentials.\n\
         apiVersion: v1\nkind: Config\nclusters:\n",
    );
    for context in &list.contexts {
        let _ = write!(
            out,
            "- name: {}\n  cluster:\n    server: {}\n",
            quote(&context.name),
            quote(&format!(
                "{base}/{}/{}",
                kprox_listener::CLUSTERS_SEGMENT,
                path_text(&context.name)
            )),
        );
    }
    out.push_str("users:\n- name: kprox\n  user: {}\ncontexts:\n");
    for context in &list.contexts {
        let _ = write!(
            out,
            "- name: {name}\n  context:\n    cluster: {name}\n    user: kprox\n",
            name = quote(&context.name)
        );
        if let Some(namespace) = &context.namespace {
            let _ = writeln!(out, "    namespace: {}", quote(namespace));
        }
    }
    if let Some(current) = &list.current {
        let _ = writeln!(out, "current-context: {}", quote(current));
    }
    out
}

/// A context name as path text: kept as written where a path allows it (`/` included, so a
/// name such as an EKS ARN stays segments kprox matches), escaped elsewhere.
fn path_text(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kprox_auth::{ContextEntry, ContextList};

    #[test]
    fn every_context_gets_its_prefix_and_its_namespace_and_names_stay_whole() {
        let list = ContextList {
            contexts: vec![
                ContextEntry {
                    name: "prod".into(),
                    namespace: Some("web".into()),
                    digest: 1,
                },
                ContextEntry {
                    name: "arn:aws:eks:eu-west-1:1:cluster/my cluster".into(),
                    namespace: None,
                    digest: 2,
                },
            ],
            current: Some("prod".into()),
        };
        let text = render(&list, "http://127.0.0.1:8001");
        assert!(
            text.contains("server: \"http://127.0.0.1:8001/clusters/prod\""),
            "{text}"
        );
        assert!(
            text.contains(
                "server: \"http://127.0.0.1:8001/clusters/arn:aws:eks:eu-west-1:1:cluster/my%20cluster\""
            ),
            "{text}"
        );
        assert!(text.contains("    namespace: \"web\""), "{text}");
        assert!(text.contains("current-context: \"prod\""), "{text}");
        assert!(!text.contains("token"), "no credentials: {text}");
    }
}
