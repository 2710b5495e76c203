//! Finds the cluster and user to act as: reads the kubeconfig (`--kubeconfig`, else every file
//! in `KUBECONFIG` merged by kubectl's rules, else `~/.kube/config`), picks the context, cluster
//! and user, and loads the CA and credentials they name.
//!
//! kube-client supplies the kubeconfig model, the merge and relative-path resolution; choosing
//! entries and reading credentials is ours so that errors name the file and entry, and so that
//! credentials can be refreshed later without reloading everything.

use std::path::{Path, PathBuf};

use base64::Engine;
use kprox_config::KubeconfigConfig;
use kube_client::config::{AuthInfo, Cluster, Kubeconfig};
use rustls_pki_types::CertificateDer;
use secrecy::ExposeSecret;

use crate::access::{ClusterAccess, CredentialSpec, ServerTrust};
use crate::client_cert::{ClientIdentity, identity_from_pem, parse_certificates};
use crate::{AuthError, Impersonation, Secret};

/// Loads the kubeconfig chosen by `selection` and the environment.
pub fn load(selection: &KubeconfigConfig) -> Result<ClusterAccess, AuthError> {
    match read_kubeconfig(selection.path.as_deref()) {
        Ok((kubeconfig, source)) => select(&kubeconfig, &source, selection),
        // No kubeconfig anywhere, inside a pod: the pod's service account, as client-go does.
        Err(AuthError::NoKubeconfig(why))
            if selection.path.is_none()
                && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() =>
        {
            tracing::info!(%why, "no kubeconfig; using the pod's service account");
            crate::incluster::load(&selection.service_account_dir, selection)
        }
        Err(error) => Err(error),
    }
}

/// Parses kubeconfig text (named `source` in errors) and selects from it as [`load`] does.
pub fn parse(
    text: &str,
    source: &str,
    selection: &KubeconfigConfig,
) -> Result<ClusterAccess, AuthError> {
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| AuthError::Kubeconfig {
        path: source.to_owned(),
        reason: error_chain(&e),
    })?;
    select(&kubeconfig, source, selection)
}

pub(crate) fn read_kubeconfig(path: Option<&Path>) -> Result<(Kubeconfig, String), AuthError> {
    let read = |path: &Path| {
        let source = path.display().to_string();
        if !path.exists() {
            return Err(AuthError::Kubeconfig {
                path: source,
                reason: "the file does not exist".to_owned(),
            });
        }
        Kubeconfig::read_from(path)
            .map(|k| (k, source.clone()))
            .map_err(|e| AuthError::Kubeconfig {
                path: source,
                reason: error_chain(&e),
            })
    };
    if let Some(path) = path {
        return read(path);
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let source = format!("KUBECONFIG={}", list.to_string_lossy());
        let mut merged: Option<Kubeconfig> = None;
        for path in &paths {
            // kubectl skips files in KUBECONFIG that do not exist.
            if !path.exists() {
                continue;
            }
            let (next, _) = read(path)?;
            merged = Some(match merged {
                None => next,
                Some(m) => m.merge(next).map_err(|e| AuthError::Kubeconfig {
                    path: path.display().to_string(),
                    reason: error_chain(&e),
                })?,
            });
        }
        return merged.map(|k| (k, source.clone())).ok_or_else(|| {
            AuthError::NoKubeconfig(format!("none of the files in {source} exists"))
        });
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| AuthError::NoKubeconfig("HOME is not set".to_owned()))?;
    let default = home.join(".kube").join("config");
    if !default.exists() {
        return Err(AuthError::NoKubeconfig(format!(
            "{} does not exist",
            default.display()
        )));
    }
    read(&default)
}

/// An error and its causes in one line, safe to print: a kubeconfig holds tokens and keys,
/// and YAML errors quote the offending line (and serde quotes the offending value), so only
/// the first line of each message is kept and double-quoted values are redacted.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = redact_quoted(error.to_string().lines().next().unwrap_or_default());
    let mut source = error.source();
    while let Some(e) = source {
        let next = redact_quoted(e.to_string().lines().next().unwrap_or_default());
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// `invalid type: string "abc", expected a map` → `invalid type: string "…", expected a map`.
fn redact_quoted(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut inside = false;
    for c in line.chars() {
        match (c, inside) {
            ('"', false) => {
                inside = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                inside = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// Picks context, cluster and user and loads what they name.
pub fn select(
    kubeconfig: &Kubeconfig,
    source: &str,
    selection: &KubeconfigConfig,
) -> Result<ClusterAccess, AuthError> {
    let not_found = |what, name: &str, fix: String| AuthError::NotFound {
        path: source.to_owned(),
        what,
        name: name.to_owned(),
        fix,
    };
    let names = |list: Vec<&String>| {
        if list.is_empty() {
            "none defined".to_owned()
        } else {
            list.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };

    let context_name = selection
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone().filter(|c| !c.is_empty()));
    let context = match &context_name {
        Some(name) => Some(
            kubeconfig
                .contexts
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| {
                    not_found(
                        "context",
                        name,
                        format!(
                            "use one of: {}",
                            names(kubeconfig.contexts.iter().map(|c| &c.name).collect())
                        ),
                    )
                })?
                .context
                .clone()
                .unwrap_or_default(),
        ),
        None => None,
    };
    let cluster_name = selection
        .cluster
        .clone()
        .or_else(|| context.as_ref().map(|c| c.cluster.clone()).filter(|c| !c.is_empty()))
        .ok_or_else(|| AuthError::Invalid {
            path: source.to_owned(),
            entry: "current-context".to_owned(),
            reason: "no context is selected; fix: pass --context NAME or run `kubectl config use-context NAME`".to_owned(),
        })?;
    let user_name = selection
        .user
        .clone()
        .or_else(|| context.as_ref().and_then(|c| c.user.clone()))
        .unwrap_or_default();

    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .ok_or_else(|| {
            not_found(
                "cluster",
                &cluster_name,
                format!(
                    "use one of: {}",
                    names(kubeconfig.clusters.iter().map(|c| &c.name).collect())
                ),
            )
        })?
        .cluster
        .clone()
        .unwrap_or_default();
    let auth_info = if user_name.is_empty() {
        AuthInfo::default()
    } else {
        kubeconfig
            .auth_infos
            .iter()
            .find(|u| u.name == user_name)
            .ok_or_else(|| {
                not_found(
                    "user",
                    &user_name,
                    format!(
                        "use one of: {}",
                        names(kubeconfig.auth_infos.iter().map(|u| &u.name).collect())
                    ),
                )
            })?
            .auth_info
            .clone()
            .unwrap_or_default()
    };

    let cluster_entry = format!("cluster \"{cluster_name}\"");
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::Invalid {
            path: source.to_owned(),
            entry: cluster_entry.clone(),
            reason: "has no `server`; fix: set clusters[].cluster.server to the apiserver URL"
                .to_owned(),
        })?;
    // kubectl's global flags override the cluster's TLS settings.
    let mut cluster = cluster;
    if let Some(ca) = &selection.certificate_authority {
        cluster.certificate_authority = Some(ca.display().to_string());
        cluster.certificate_authority_data = None;
        cluster.insecure_skip_tls_verify = Some(false);
    }
    if selection.insecure_skip_tls_verify {
        cluster.insecure_skip_tls_verify = Some(true);
        cluster.certificate_authority = None;
        cluster.certificate_authority_data = None;
    }
    if let Some(name) = &selection.tls_server_name {
        cluster.tls_server_name = Some(name.clone());
    }
    let trust = load_trust(&cluster, source, &cluster_entry)?;
    let user_entry = format!("user \"{user_name}\"");
    let (identity, credential) = load_user(
        &auth_info,
        &cluster,
        source,
        &user_entry,
        selection.exec_timeout.get(),
    )?;
    // --token replaces the user's credential (a client certificate stays, as with kubectl).
    let credential = match &selection.token {
        Some(token) => CredentialSpec::Token(Secret::new(token.clone())),
        None => credential,
    };
    // Flags and config override the kubeconfig user's `as` fields, as kubectl's flags do.
    let impersonation = Impersonation {
        user: selection
            .impersonate_user
            .clone()
            .or_else(|| auth_info.impersonate.clone().filter(|u| !u.is_empty())),
        uid: selection
            .impersonate_uid
            .clone()
            .or_else(|| auth_info.impersonate_uid.clone().filter(|u| !u.is_empty())),
        groups: if selection.impersonate_groups.is_empty() {
            auth_info.impersonate_groups.clone().unwrap_or_default()
        } else {
            selection.impersonate_groups.clone()
        },
        extra: auth_info
            .impersonate_user_extra
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
    };

    Ok(ClusterAccess {
        source: source.to_owned(),
        context: context_name.unwrap_or_default(),
        cluster: cluster_name,
        user: user_name,
        server,
        trust,
        identity,
        credential,
        impersonation,
        identity_files: match (
            auth_info.client_certificate.as_deref(),
            auth_info.client_key.as_deref(),
            auth_info.client_certificate_data.is_some(),
        ) {
            (Some(cert), Some(key), false) if !cert.is_empty() && !key.is_empty() => {
                Some((PathBuf::from(cert), PathBuf::from(key)))
            }
            _ => None,
        },
        proxy_url: cluster.proxy_url.clone().filter(|p| !p.is_empty()),
        in_cluster: false,
    })
}

fn load_trust(cluster: &Cluster, source: &str, entry: &str) -> Result<ServerTrust, AuthError> {
    let insecure = cluster.insecure_skip_tls_verify.unwrap_or(false);
    let invalid = |reason: String| AuthError::Invalid {
        path: source.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let (roots, roots_source) = if let Some(data) = cluster
        .certificate_authority_data
        .as_deref()
        .filter(|d| !d.is_empty())
    {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| invalid("certificate-authority-data is not base64".to_owned()))?;
        let roots = parse_certificates(&pem)
            .map_err(|e| invalid(format!("certificate-authority-data: {e}")))?;
        (roots, "certificate-authority-data".to_owned())
    } else if let Some(file) = cluster
        .certificate_authority
        .as_deref()
        .filter(|f| !f.is_empty())
    {
        let pem = std::fs::read(file).map_err(|e| AuthError::File {
            entry: format!("{source}: {entry}: certificate-authority"),
            file: file.into(),
            reason: e.to_string(),
        })?;
        let roots = parse_certificates(&pem)
            .map_err(|e| invalid(format!("certificate-authority {file}: {e}")))?;
        (roots, file.to_owned())
    } else {
        (Vec::new(), "system".to_owned())
    };
    if insecure && !roots.is_empty() {
        return Err(invalid(
            "sets both insecure-skip-tls-verify and a certificate authority; fix: remove one (kubectl refuses this too)".to_owned(),
        ));
    }
    let roots = if roots.is_empty() && !insecure {
        system_roots()
    } else {
        roots
    };
    let ca_file = cluster
        .certificate_authority
        .as_deref()
        .filter(|f| !f.is_empty() && roots_source == *f)
        .map(PathBuf::from);
    Ok(ServerTrust {
        roots,
        roots_source,
        server_name: cluster.tls_server_name.clone().filter(|s| !s.is_empty()),
        insecure,
        ca_file,
    })
}

/// The operating system's trusted CAs, used when the kubeconfig names none (as kubectl does).
fn system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "could not read a system CA certificate");
    }
    found.certs
}

fn load_user(
    user: &AuthInfo,
    cluster: &Cluster,
    source: &str,
    entry: &str,
    exec_timeout: std::time::Duration,
) -> Result<(Option<ClientIdentity>, CredentialSpec), AuthError> {
    let unsupported = |what: &str| AuthError::Unsupported {
        path: source.to_owned(),
        entry: entry.to_owned(),
        reason: what.to_owned(),
    };
    let mut provider_token = None;
    if let Some(provider) = &user.auth_provider {
        match provider.name.as_str() {
            // OIDC: the id-token the login flow stored; kprox does not run the refresh flow.
            "oidc" => match provider.config.get("id-token").filter(|t| !t.is_empty()) {
                Some(token) => provider_token = Some(token.clone()),
                None => {
                    return Err(unsupported(
                        "an oidc auth-provider without an id-token is not supported; fix: log in first so the kubeconfig holds an id-token, or use an exec plugin such as kubelogin",
                    ));
                }
            },
            "gcp" => {
                return Err(unsupported(
                    "the gcp auth-provider is not supported (kubectl removed it too); fix: use the gke-gcloud-auth-plugin exec plugin",
                ));
            }
            "azure" => {
                return Err(unsupported(
                    "the azure auth-provider is not supported (kubectl removed it too); fix: use the kubelogin exec plugin",
                ));
            }
            other => {
                return Err(unsupported(&format!(
                    "the {other} auth-provider is not supported; fix: use an exec credential plugin"
                )));
            }
        }
    }

    let read = |what: &str, file: &str| {
        std::fs::read(file).map_err(|e| AuthError::File {
            entry: format!("{source}: {entry}: {what}"),
            file: file.into(),
            reason: e.to_string(),
        })
    };
    let invalid = |reason: String| AuthError::Invalid {
        path: source.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let decode = |what: &str, data: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| invalid(format!("{what} is not base64")))
    };

    let cert_pem = match (
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_deref(),
    ) {
        (Some(data), _) if !data.is_empty() => Some(decode("client-certificate-data", data)?),
        (_, Some(file)) if !file.is_empty() => Some(read("client-certificate", file)?),
        _ => None,
    };
    let key_pem = match (user.client_key_data.as_ref(), user.client_key.as_deref()) {
        (Some(data), _) if !data.expose_secret().is_empty() => {
            Some(decode("client-key-data", data.expose_secret())?)
        }
        (_, Some(file)) if !file.is_empty() => Some(read("client-key", file)?),
        _ => None,
    };
    let identity = match (cert_pem, key_pem) {
        (Some(cert), Some(key)) => Some(identity_from_pem(&cert, &key).map_err(|e| invalid(format!("client certificate: {e}")))?),
        (None, None) => None,
        (Some(_), None) => return Err(invalid("has a client certificate but no client key; fix: set client-key or client-key-data".to_owned())),
        (None, Some(_)) => return Err(invalid("has a client key but no client certificate; fix: set client-certificate or client-certificate-data".to_owned())),
    };

    // client-go: a token file wins over an inline token (the file is the one kept fresh).
    let credential = if let Some(exec) = &user.exec {
        CredentialSpec::Exec(Box::new(crate::exec::from_kubeconfig(
            exec,
            cluster,
            &format!("{source}: {entry}"),
            exec_timeout,
        )?))
    } else if let Some(token) = provider_token {
        CredentialSpec::Token(Secret::new(token))
    } else if let Some(file) = user.token_file.as_deref().filter(|f| !f.is_empty()) {
        CredentialSpec::TokenFile(PathBuf::from(file))
    } else if let Some(token) = user
        .token
        .as_ref()
        .filter(|t| !t.expose_secret().is_empty())
    {
        CredentialSpec::Token(Secret::new(token.expose_secret().trim().to_owned()))
    } else if let (Some(username), Some(password)) =
        (user.username.as_ref(), user.password.as_ref())
    {
        CredentialSpec::Basic {
            username: username.clone(),
            password: Secret::new(password.expose_secret().to_owned()),
        }
    } else {
        CredentialSpec::None
    };
    Ok((identity, credential))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_kubeconfig_error_never_quotes_its_secrets() {
        let broken = [
            "users:\n- name: u\n  user:\n    token: [s3cret-value-1\n",
            "!2%%!Ks3cret-value-1[",
            "users: \"s3cret-value-1\"\n",
        ];
        for text in broken {
            let error = parse(text, "kubeconfig", &KubeconfigConfig::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| panic!("{text:?} parsed"));
            assert!(!error.contains("s3cret"), "{error}");
            assert!(error.contains("kubeconfig"), "{error}");
        }
    }

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "abc", expected a map"#),
            r#"invalid type: string "…", expected a map"#
        );
    }
}
