//! Several clusters behind one listener (`--all-contexts`): a request under
//! `/clusters/<context>/` goes to that context's upstream with the rest of its path, and is
//! judged by the filters on that rest, exactly as a request to the current context is. The
//! binary owns the contexts (which exist, how one is set up on first use); the pipeline only
//! asks through [`Contexts`].

use std::future::Future;
use std::pin::Pin;

use crate::forward::Forwarder;
use crate::normalise::RequestPath;

/// The first segment of every path that names a context.
pub const CLUSTERS_SEGMENT: &str = "clusters";

/// Why a context cannot serve a request: the status and the message of the `Status` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextRefusal {
    pub status: http::StatusCode,
    pub message: String,
}

/// The contexts the listener serves besides the current one.
pub trait Contexts: Send + Sync + std::fmt::Debug {
    /// The names of the contexts served now, in kubeconfig order.
    fn names(&self) -> std::sync::Arc<Vec<String>>;

    /// The forwarder of `context`, set up on its first use (its credentials loaded, its exec
    /// plugin run), or why it cannot serve.
    fn forwarder<'a>(
        &'a self,
        context: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Forwarder, ContextRefusal>> + Send + 'a>>;
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Not under `/clusters/`: the current context.
    Current,
    /// Under `/clusters/<context>/`: that context, and the path below it.
    Context { name: String, rest: RequestPath },
    /// Under `/clusters/` but naming no context served.
    Unknown,
}

/// Splits `path` by the context it names among `names`. Names may hold `/` (EKS names its
/// contexts by ARN, `arn:aws:eks:…:cluster/prod`): the longest name whose segments begin the
/// path wins.
pub fn route(path: &RequestPath, names: &[String]) -> Route {
    let judged = path.judged.as_str();
    let under = judged
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(CLUSTERS_SEGMENT))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if !under {
        return Route::Current;
    }
    let mut best: Option<(&String, RequestPath)> = None;
    for name in names {
        if name.is_empty() || best.as_ref().is_some_and(|(b, _)| b.len() >= name.len()) {
            continue;
        }
        if let Some(rest) = path.strip_prefix(&format!("/{CLUSTERS_SEGMENT}/{name}/")) {
            best = Some((name, rest));
        }
    }
    match best {
        Some((name, rest)) => Route::Context {
            name: name.clone(),
            rest,
        },
        None => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> RequestPath {
        crate::normalise::normalise(p).expect("a path")
    }

    fn names() -> Vec<String> {
        [
            "prod",
            "dev",
            "arn:aws:eks:eu-west-1:1:cluster/prod",
            "arn:aws:eks:eu-west-1:1:cluster",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rest(route: Route) -> (String, String, String) {
        match route {
            Route::Context { name, rest } => (name, rest.judged, rest.forwarded),
            other => panic!("not a context route: {other:?}"),
        }
    }

    #[test]
    fn a_context_prefix_is_removed_in_both_forms() {
        assert_eq!(
            rest(route(&path("/clusters/dev/api/v1/pods"), &names())),
            ("dev".into(), "/api/v1/pods".into(), "/api/v1/pods".into())
        );
        assert_eq!(
            rest(route(&path("/clusters/prod"), &names())),
            ("prod".into(), "/".into(), "/".into())
        );
        let (name, judged, forwarded) = rest(route(
            &path("/clusters/dev/api/v1/namespaces/a/pods/x%2Fy"),
            &names(),
        ));
        assert_eq!(name, "dev");
        assert_eq!(judged, "/api/v1/namespaces/a/pods/x/y", "judged decoded");
        assert_eq!(
            forwarded, "/api/v1/namespaces/a/pods/x%2Fy",
            "forwarded as sent"
        );
    }

    #[test]
    fn the_longest_name_wins_and_names_may_hold_slashes() {
        assert_eq!(
            rest(route(
                &path("/clusters/arn:aws:eks:eu-west-1:1:cluster/prod/api"),
                &names()
            ))
            .0,
            "arn:aws:eks:eu-west-1:1:cluster/prod"
        );
        assert_eq!(
            rest(route(
                &path("/clusters/arn:aws:eks:eu-west-1:1:cluster/api"),
                &names()
            ))
            .0,
            "arn:aws:eks:eu-west-1:1:cluster"
        );
    }

    #[test]
    fn other_paths_go_to_the_current_context_and_unknown_names_nowhere() {
        for p in [
            "/api/v1/pods",
            "/clustersx/dev/api",
            "/",
            "/apis/clusters/dev",
        ] {
            assert_eq!(route(&path(p), &names()), Route::Current, "{p}");
        }
        for p in [
            "/clusters",
            "/clusters/",
            "/clusters/staging/api",
            "/clusters/pro/api",
        ] {
            assert_eq!(route(&path(p), &names()), Route::Unknown, "{p}");
        }
    }
}
