//! An accepted client socket, TCP or unix, and the same socket between two runtimes'
//! reactors while it is handed to a worker (`workers.rs`).

/// An accepted client socket.
pub(crate) enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// A socket between two runtimes' reactors.
pub(crate) enum Detached {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    /// Takes the socket off this runtime's reactor.
    pub(crate) fn detach(self) -> std::io::Result<Detached> {
        Ok(match self {
            Self::Tcp(tcp) => Detached::Tcp(tcp.into_std()?),
            Self::Unix(unix) => Detached::Unix(unix.into_std()?),
        })
    }
}

impl Detached {
    /// Registers the socket with the current runtime's reactor (it is still non-blocking).
    pub(crate) fn attach(self) -> std::io::Result<Stream> {
        Ok(match self {
            Self::Tcp(tcp) => Stream::Tcp(tokio::net::TcpStream::from_std(tcp)?),
            Self::Unix(unix) => Stream::Unix(tokio::net::UnixStream::from_std(unix)?),
        })
    }
}
