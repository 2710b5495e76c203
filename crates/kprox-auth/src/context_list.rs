//! The contexts of the kubeconfig, for `--all-contexts` (which contexts exist, and whether one
//! changed since it was set up) and `kprox kubeconfig` (their names and namespaces). Reading
//! the list runs nothing: no credential is loaded and no exec plugin started.

use std::hash::{Hash, Hasher};

use kprox_config::KubeconfigConfig;
use kube_client::config::Kubeconfig;

use crate::AuthError;
use crate::kubeconfig::read_kubeconfig;

/// One context of the kubeconfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextEntry {
    pub name: String,
    /// The context's default namespace, if it names one.
    pub namespace: Option<String>,
    /// Changes whenever the context, its cluster or its user entry changes (not a secret: a
    /// hash, never shown).
    pub digest: u64,
}

/// The kubeconfig's contexts, in file order, and its current context.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextList {
    pub contexts: Vec<ContextEntry>,
    pub current: Option<String>,
}

impl ContextList {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&ContextEntry> {
        self.contexts.iter().find(|c| c.name == name)
    }

    /// The names, comma-separated, for messages.
    pub fn names(&self) -> String {
        if self.contexts.is_empty() {
            return "none defined".to_owned();
        }
        self.contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Reads the contexts of the kubeconfig `selection` names (the same files [`crate::load`]
/// reads).
pub fn contexts(selection: &KubeconfigConfig) -> Result<ContextList, AuthError> {
    let (kubeconfig, _) = read_kubeconfig(selection.path.as_deref())?;
    Ok(list(&kubeconfig))
}

fn list(kubeconfig: &Kubeconfig) -> ContextList {
    let contexts = kubeconfig
        .contexts
        .iter()
        .map(|named| {
            let context = named.context.as_ref();
            let cluster = context.and_then(|c| {
                kubeconfig
                    .clusters
                    .iter()
                    .find(|cluster| cluster.name == c.cluster)
            });
            let user = context
                .and_then(|c| c.user.as_ref())
                .and_then(|user| kubeconfig.auth_infos.iter().find(|a| &a.name == user));
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            // serde_json writes secrets too (kube's SecretString serialises its value), so a
            // rotated token changes the digest; the text is hashed and dropped.
            for part in [
                serde_json::to_string(&named).ok(),
                serde_json::to_string(&cluster).ok(),
                serde_json::to_string(&user).ok(),
            ] {
                part.hash(&mut hasher);
            }
            ContextEntry {
                name: named.name.clone(),
                namespace: context.and_then(|c| c.namespace.clone()),
                digest: hasher.finish(),
            }
        })
        .collect();
    ContextList {
        contexts,
        current: kubeconfig.current_context.clone().filter(|c| !c.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod-cluster
  cluster: {server: "https://10.0.0.1:6443"}
- name: dev-cluster
  cluster: {server: "https://10.0.0.2:6443"}
users:
- name: prod-user
  user: {token: first}
- name: dev-user
  user: {token: dev}
contexts:
- name: prod
  context: {cluster: prod-cluster, user: prod-user, namespace: web}
- name: dev
  context: {cluster: dev-cluster, user: dev-user}
"#;

    fn parsed(text: &str) -> ContextList {
        list(&Kubeconfig::from_yaml(text).expect("kubeconfig"))
    }

    #[test]
    fn contexts_are_listed_with_namespaces_and_the_current_one() {
        let list = parsed(KUBECONFIG);
        assert_eq!(list.current.as_deref(), Some("prod"));
        assert_eq!(list.names(), "prod, dev");
        assert_eq!(
            list.get("prod").and_then(|c| c.namespace.as_deref()),
            Some("web")
        );
        assert_eq!(list.get("dev").and_then(|c| c.namespace.as_deref()), None);
    }

    #[test]
    fn a_digest_changes_with_its_user_or_cluster_and_only_its_own() {
        let before = parsed(KUBECONFIG);
        let after = parsed(&KUBECONFIG.replace("token: first", "token: second"));
        let digest = |l: &ContextList, n: &str| l.get(n).map(|c| c.digest);
        assert_ne!(
            digest(&before, "prod"),
            digest(&after, "prod"),
            "token rotated"
        );
        assert_eq!(digest(&before, "dev"), digest(&after, "dev"));
        let moved = parsed(&KUBECONFIG.replace("10.0.0.2", "10.0.0.3"));
        assert_ne!(
            digest(&before, "dev"),
            digest(&moved, "dev"),
            "server moved"
        );
        assert_eq!(digest(&before, "prod"), digest(&moved, "prod"));
    }
}
