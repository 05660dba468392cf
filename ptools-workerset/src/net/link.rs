//! A TCP stream as a [`Link`]: the same frames, caps and deadlines as the socket pair.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use crate::sys;
use crate::wire::Link;

/// One authenticated TCP connection (`TCP_NODELAY`: a call or a reply is one small write
/// that must leave at once, not wait for the previous one's acknowledgement).
#[derive(Debug)]
pub(crate) struct TcpLink(pub(crate) TcpStream);

impl TcpLink {
    /// Wraps a connected stream: blocking, no read timeout, `TCP_NODELAY`.
    pub(crate) fn new(s: TcpStream) -> io::Result<TcpLink> {
        s.set_nonblocking(false)?;
        s.set_read_timeout(None)?;
        s.set_nodelay(true)?;
        Ok(TcpLink(s))
    }
}

impl Link for TcpLink {
    fn send_all(&self, buf: &[u8]) -> io::Result<()> {
        // std sends with MSG_NOSIGNAL: a peer gone is an error here, never SIGPIPE.
        (&self.0).write_all(buf)
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&self.0).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        sys::poll_readable(self.0.as_fd(), timeout)
    }
    fn shutdown(&self) {
        // Already shut down or reset: nothing left to wake.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}
