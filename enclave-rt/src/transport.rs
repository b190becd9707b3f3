//! Where the enclave listens: vsock in production, Unix socket paths for local runs and
//! tests. One address type, one listener type, one stream type, so the event loop does not
//! know which it has.
//!
//! Address syntax (configuration and command line): `vsock:CID:PORT` or `unix:PATH`.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use vsock::{VsockListener, VsockStream};

// The address type is the core's: the arguments that name addresses are defined there.
pub use enclave_core::enclave_args::{Address, AddressError};

/// A listening socket of either kind.
pub enum Listener {
    /// vsock.
    Vsock(VsockListener),
    /// Unix.
    Unix(UnixListener),
}

/// A connected stream of either kind.
pub enum Stream {
    /// vsock.
    Vsock(VsockStream),
    /// Unix.
    Unix(UnixStream),
}

impl Listener {
    /// Binds and listens (non-blocking). A stale Unix socket file is replaced.
    pub fn bind(address: &Address) -> io::Result<Self> {
        let listener = match address {
            Address::Vsock { cid, port } => {
                Self::Vsock(VsockListener::bind_with_cid_port(*cid, *port)?)
            }
            Address::Unix(path) => {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                Self::Unix(UnixListener::bind(path)?)
            }
        };
        match &listener {
            Self::Vsock(l) => l.set_nonblocking(true)?,
            Self::Unix(l) => l.set_nonblocking(true)?,
        }
        Ok(listener)
    }

    /// Accepts one connection if one is waiting (`Ok(None)` if none), non-blocking.
    pub fn accept(&self) -> io::Result<Option<Stream>> {
        let result = match self {
            Self::Vsock(l) => l.accept().map(|(s, _)| Stream::Vsock(s)),
            Self::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        };
        match result {
            Ok(stream) => {
                stream.set_nonblocking()?;
                Ok(Some(stream))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Vsock(l) => l.as_fd(),
            Self::Unix(l) => l.as_fd(),
        }
    }
}

impl Stream {
    /// Connects (blocking) to `address`.
    pub fn connect(address: &Address) -> io::Result<Self> {
        match address {
            Address::Vsock { cid, port } => {
                VsockStream::connect_with_cid_port(*cid, *port).map(Self::Vsock)
            }
            Address::Unix(path) => UnixStream::connect(path).map(Self::Unix),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Self::Vsock(s) => s.set_nonblocking(true),
            Self::Unix(s) => s.set_nonblocking(true),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Vsock(s) => s.as_fd(),
            Self::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Vsock(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // vsock: at most 32 KiB per write (a guest-kernel bug corrupts larger packets).
        let buf = &buf[..buf.len().min(wire::VSOCK_WRITE_CHUNK)];
        match self {
            Self::Vsock(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
