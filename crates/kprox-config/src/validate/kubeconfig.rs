//! `[kubeconfig]`: which kubeconfig, context, cluster and user, and kubectl's overriding flags.

use std::path::PathBuf;

use crate::ConfigError;
use crate::config::*;
use crate::raw::RawKubeconfig;

use super::values::{Refusal, non_empty, positive_duration};

/// `[kubeconfig]`: empty strings are unset, durations positive.
pub(super) fn kubeconfig(
    err: &Refusal<'_>,
    kube: RawKubeconfig,
) -> Result<KubeconfigConfig, ConfigError> {
    let kubeconfig = KubeconfigConfig {
        path: non_empty(kube.path.as_deref()).map(PathBuf::from),
        context: non_empty(kube.context.as_deref()).map(str::to_owned),
        cluster: non_empty(kube.cluster.as_deref()).map(str::to_owned),
        user: non_empty(kube.user.as_deref()).map(str::to_owned),
        append_server_path: kube.append_server_path.unwrap_or(false),
        impersonate_user: non_empty(kube.impersonate_user.as_deref()).map(str::to_owned),
        impersonate_groups: kube
            .impersonate_groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|g| !g.is_empty())
            .collect(),
        impersonate_uid: non_empty(kube.impersonate_uid.as_deref()).map(str::to_owned),
        token: non_empty(kube.token.as_deref()).map(str::to_owned),
        certificate_authority: non_empty(kube.certificate_authority.as_deref()).map(PathBuf::from),
        insecure_skip_tls_verify: kube.insecure_skip_tls_verify.unwrap_or(false),
        tls_server_name: non_empty(kube.tls_server_name.as_deref()).map(str::to_owned),
        exec_timeout: positive_duration(
            &err,
            "kubeconfig.exec_timeout",
            kube.exec_timeout,
            DEFAULT_EXEC_TIMEOUT,
        )?,
        service_account_dir: PathBuf::from(
            non_empty(kube.service_account_dir.as_deref()).unwrap_or(DEFAULT_SERVICE_ACCOUNT_DIR),
        ),
        reload_interval: positive_duration(
            &err,
            "kubeconfig.reload_interval",
            kube.reload_interval,
            DEFAULT_RELOAD_INTERVAL,
        )?,
        follow_context: kube.follow_context.unwrap_or(false),
        all_contexts: kube.all_contexts.unwrap_or(false),
    };
    Ok(kubeconfig)
}
