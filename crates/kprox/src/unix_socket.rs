//! `-u/--unix-socket`: a socket only its owner can use (mode 0600), replacing a stale one.
//!
//! The socket is bound inside a fresh private directory, given its mode, and renamed into
//! place, so there is no moment when another user could connect to it. It listens with the
//! same backlog as the TCP listeners ([`crate::listen_socket::LISTEN_BACKLOG`]), not the
//! standard library's 128, so a burst of clients is queued rather than refused.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::Context as _;
use kprox_listener::Listener;
use tokio::net::UnixSocket;

use crate::listen_socket::LISTEN_BACKLOG;

/// Binds `path`.
pub async fn bind(path: &Path) -> anyhow::Result<Listener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket nobody answers on is stale (kprox died without cleaning up).
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "{}: another process is serving on this socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("{}: cannot remove the stale socket", path.display()))?;
        }
        Ok(_) => anyhow::bail!(
            "{}: exists and is not a socket; fix: choose another path",
            path.display()
        ),
        Err(_) => {}
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = tempfile::Builder::new()
        .prefix(".kprox-sock-")
        .tempdir_in(parent)
        .with_context(|| format!("{}: cannot create the socket", path.display()))?;
    let staging = private.path().join("s");
    let listener = UnixSocket::new_stream()
        .and_then(|socket| {
            socket.bind(&staging)?;
            socket.listen(LISTEN_BACKLOG)
        })
        .with_context(|| format!("{}: cannot bind", path.display()))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staging, path)
        .with_context(|| format!("{}: cannot move the socket into place", path.display()))?;
    Ok(Listener::Unix(listener, path.to_owned()))
}
