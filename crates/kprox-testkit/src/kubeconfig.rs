//! Writes kubeconfig files for tests: clusters, users (token, token file, client certificate),
//! contexts and the current context.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine;

#[derive(Clone, Debug)]
struct Cluster {
    name: String,
    server: String,
    ca_pem: Option<String>,
    ca_file: Option<String>,
    tls_server_name: Option<String>,
    insecure: bool,
    proxy_url: Option<String>,
}

#[derive(Clone, Debug)]
enum Credential {
    None,
    Token(String),
    TokenFile(String),
    CertData {
        cert_pem: String,
        key_pem: String,
    },
    CertFiles {
        cert: String,
        key: String,
    },
    Exec {
        command: String,
        env: Vec<(String, String)>,
        install_hint: Option<String>,
    },
}

/// Builds a kubeconfig. Strings are written double-quoted (JSON quoting is valid YAML).
#[derive(Clone, Debug, Default)]
pub struct KubeconfigBuilder {
    clusters: Vec<Cluster>,
    users: Vec<(String, Credential)>,
    contexts: Vec<(String, String, String)>,
    current: Option<String>,
}

fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

impl KubeconfigBuilder {
    /// An empty kubeconfig.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cluster verified with `ca_pem` (embedded as `certificate-authority-data`).
    pub fn cluster(mut self, name: &str, server: &str, ca_pem: &str) -> Self {
        self.clusters.push(Cluster {
            name: name.into(),
            server: server.into(),
            ca_pem: Some(ca_pem.into()),
            ca_file: None,
            tls_server_name: None,
            insecure: false,
            proxy_url: None,
        });
        self
    }

    /// Adds a cluster whose CA is read from a file (`certificate-authority`).
    pub fn cluster_with_ca_file(mut self, name: &str, server: &str, ca_file: &str) -> Self {
        self.clusters.push(Cluster {
            name: name.into(),
            server: server.into(),
            ca_pem: None,
            ca_file: Some(ca_file.into()),
            tls_server_name: None,
            insecure: false,
            proxy_url: None,
        });
        self
    }

    /// Adds a cluster with `insecure-skip-tls-verify: true`.
    pub fn insecure_cluster(mut self, name: &str, server: &str) -> Self {
        self.clusters.push(Cluster {
            name: name.into(),
            server: server.into(),
            ca_pem: None,
            ca_file: None,
            tls_server_name: None,
            insecure: true,
            proxy_url: None,
        });
        self
    }

    /// Sets `tls-server-name` on the last cluster added.
    pub fn tls_server_name(mut self, server_name: &str) -> Self {
        if let Some(cluster) = self.clusters.last_mut() {
            cluster.tls_server_name = Some(server_name.into());
        }
        self
    }

    /// Sets `proxy-url` on the last cluster added.
    pub fn proxy_url(mut self, url: &str) -> Self {
        if let Some(cluster) = self.clusters.last_mut() {
            cluster.proxy_url = Some(url.into());
        }
        self
    }

    /// Adds a user with a bearer token.
    pub fn user_token(mut self, name: &str, token: &str) -> Self {
        self.users
            .push((name.into(), Credential::Token(token.into())));
        self
    }

    /// Adds a user whose token is read from a file.
    pub fn user_token_file(mut self, name: &str, path: &str) -> Self {
        self.users
            .push((name.into(), Credential::TokenFile(path.into())));
        self
    }

    /// Adds a user with an embedded client certificate and key.
    pub fn user_cert(mut self, name: &str, cert_pem: &str, key_pem: &str) -> Self {
        self.users.push((
            name.into(),
            Credential::CertData {
                cert_pem: cert_pem.into(),
                key_pem: key_pem.into(),
            },
        ));
        self
    }

    /// Adds a user whose client certificate and key are files.
    pub fn user_cert_files(mut self, name: &str, cert: &str, key: &str) -> Self {
        self.users.push((
            name.into(),
            Credential::CertFiles {
                cert: cert.into(),
                key: key.into(),
            },
        ));
        self
    }

    /// Adds a user authenticated by an exec credential plugin (`client.authentication.k8s.io/v1`,
    /// `interactiveMode: Never`) run with `env`.
    pub fn user_exec(
        mut self,
        name: &str,
        command: &str,
        env: &[(&str, &str)],
        install_hint: Option<&str>,
    ) -> Self {
        self.users.push((
            name.into(),
            Credential::Exec {
                command: command.into(),
                env: env
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                install_hint: install_hint.map(str::to_owned),
            },
        ));
        self
    }

    /// Adds a user without credentials.
    pub fn anonymous_user(mut self, name: &str) -> Self {
        self.users.push((name.into(), Credential::None));
        self
    }

    /// Adds a context joining a cluster and a user.
    pub fn context(mut self, name: &str, cluster: &str, user: &str) -> Self {
        self.contexts
            .push((name.into(), cluster.into(), user.into()));
        self
    }

    /// Sets `current-context`.
    pub fn current(mut self, context: &str) -> Self {
        self.current = Some(context.into());
        self
    }

    /// The kubeconfig as YAML text.
    pub fn to_yaml(&self) -> String {
        let mut out = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
        for c in &self.clusters {
            let _ = writeln!(
                out,
                "- name: {}\n  cluster:\n    server: {}",
                quote(&c.name),
                quote(&c.server)
            );
            if let Some(ca) = &c.ca_pem {
                let _ = writeln!(out, "    certificate-authority-data: {}", quote(&b64(ca)));
            }
            if let Some(file) = &c.ca_file {
                let _ = writeln!(out, "    certificate-authority: {}", quote(file));
            }
            if let Some(name) = &c.tls_server_name {
                let _ = writeln!(out, "    tls-server-name: {}", quote(name));
            }
            if let Some(proxy) = &c.proxy_url {
                let _ = writeln!(out, "    proxy-url: {}", quote(proxy));
            }
            if c.insecure {
                out.push_str("    insecure-skip-tls-verify: true\n");
            }
        }
        out.push_str("users:\n");
        for (name, credential) in &self.users {
            let _ = writeln!(out, "- name: {}\n  user:", quote(name));
            match credential {
                Credential::None => out.push_str("    {}\n"),
                Credential::Token(token) => {
                    let _ = writeln!(out, "    token: {}", quote(token));
                }
                Credential::TokenFile(path) => {
                    let _ = writeln!(out, "    tokenFile: {}", quote(path));
                }
                Credential::CertData { cert_pem, key_pem } => {
                    let _ = writeln!(
                        out,
                        "    client-certificate-data: {}\n    client-key-data: {}",
                        quote(&b64(cert_pem)),
                        quote(&b64(key_pem))
                    );
                }
                Credential::Exec {
                    command,
                    env,
                    install_hint,
                } => {
                    let _ = writeln!(
                        out,
                        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      interactiveMode: Never\n      command: {}",
                        quote(command)
                    );
                    if let Some(hint) = install_hint {
                        let _ = writeln!(out, "      installHint: {}", quote(hint));
                    }
                    if !env.is_empty() {
                        out.push_str("      env:\n");
                        for (k, v) in env {
                            let _ = writeln!(
                                out,
                                "      - name: {}\n        value: {}",
                                quote(k),
                                quote(v)
                            );
                        }
                    }
                }
                Credential::CertFiles { cert, key } => {
                    let _ = writeln!(
                        out,
                        "    client-certificate: {}\n    client-key: {}",
                        quote(cert),
                        quote(key)
                    );
                }
            }
        }
        out.push_str("contexts:\n");
        for (name, cluster, user) in &self.contexts {
            let _ = writeln!(
                out,
                "- name: {}\n  context:\n    cluster: {}\n    user: {}",
                quote(name),
                quote(cluster),
                quote(user)
            );
        }
        if let Some(current) = &self.current {
            let _ = writeln!(out, "current-context: {}", quote(current));
        }
        out
    }

    /// Writes the kubeconfig to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_yaml())
    }
}
