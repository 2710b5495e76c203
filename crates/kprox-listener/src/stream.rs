//! An accepted client socket, TCP or unix, and how it moves to another runtime's reactor when
//! it is handed to a worker (`workers.rs`).

use tokio::net::{TcpStream, UnixStream};
use tokio::runtime::Handle;

/// An accepted client socket.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// The same socket, registered with `runtime`'s reactor instead of this one's.
    pub(crate) fn move_to(self, runtime: &Handle) -> std::io::Result<Self> {
        Ok(match self {
            Self::Tcp(tcp) => Self::Tcp(tcp_move_to(tcp, runtime)?),
            Self::Unix(unix) => {
                let unix = unix.into_std()?;
                let _runtime = runtime.enter();
                Self::Unix(UnixStream::from_std(unix)?)
            }
        })
    }
}

/// [`Stream::move_to`] for a TCP socket (it stays non-blocking throughout).
pub(crate) fn tcp_move_to(tcp: TcpStream, runtime: &Handle) -> std::io::Result<TcpStream> {
    let tcp = tcp.into_std()?;
    let _runtime = runtime.enter();
    TcpStream::from_std(tcp)
}
