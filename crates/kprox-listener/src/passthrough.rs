//! The TCP pass-through listener (node-local mode): each accepted connection is spliced, byte
//! for byte, to an apiserver the upstream chooses (healthy by kprox's `/readyz` checks, by the
//! policy). TLS is never terminated, so a client's certificate — the kubelet's — reaches the
//! apiserver. When health checks take that apiserver out of rotation, its connections are
//! closed (if configured) and clients reconnect to a healthy one, as they do when the k3s agent
//! load balancer drops them.

use std::future::Future;
use std::sync::Arc;

use kprox_upstream::Upstream;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How the pass-through listener behaves.
#[derive(Clone, Copy, Debug)]
pub struct PassthroughSettings {
    /// Close an apiserver's connections when it is taken out of rotation.
    pub close_on_ejection: bool,
}

/// Accepts until `stop_accepting`, splicing each connection on the next of `workers`, then
/// keeps the spliced connections until `close_all`.
pub async fn serve_passthrough(
    listener: TcpListener,
    upstream: Arc<Upstream>,
    settings: PassthroughSettings,
    workers: Arc<crate::Workers>,
    stop_accepting: impl Future<Output = ()>,
    close_all: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(stop_accepting);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop_accepting => break,
        };
        match accepted {
            Ok((client, _)) => match workers.assign_tcp(client) {
                Ok((client, worker)) => crate::workers::spawn_in(
                    &mut connections,
                    worker,
                    relay(client, upstream.clone(), settings),
                ),
                Err(error) => {
                    tracing::debug!(%error, "a pass-through connection could not be handed to a worker");
                }
            },
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "pass-through accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = close_all => connections.abort_all(),
        () = async { while connections.join_next().await.is_some() {} } => {}
    }
}

/// Connects `client` to an apiserver and copies both ways until either side ends, or the
/// apiserver is ejected.
async fn relay(client: TcpStream, upstream: Arc<Upstream>, settings: PassthroughSettings) {
    let _ = client.set_nodelay(true);
    let kprox_upstream::PassthroughConnection { stream, lease } = match upstream
        .connect_passthrough()
        .await
    {
        Ok(connection) => connection,
        Err(error) => {
            // Closing is all a TCP client can be told.
            tracing::warn!(%error, "pass-through: no apiserver could be reached; closing the client connection");
            return;
        }
    };
    let copied = crate::splice::both_ways(
        &client,
        &stream,
        |n| lease.stats.sent_to_apiserver(n),
        |n| lease.stats.sent_to_client(n),
    );
    let ejected = async {
        if settings.close_on_ejection {
            lease.ejected().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = copied => {
            if let Err(error) = result {
                tracing::debug!(%error, endpoint = %lease.url, "pass-through connection ended");
            }
        }
        () = ejected => {
            tracing::info!(endpoint = %lease.url, "apiserver out of rotation: closing its pass-through connection");
        }
    }
}
