//! A connection's byte transport: the plain socket, or TLS over it (rustls's buffered
//! API driven by `read_tls`/`process_new_packets`/`write_tls`, never the blocking
//! `complete_io`). Both are `Read + Write`, so the connection's one read path and one
//! flush path, and every session above them, see plaintext either way.
//!
//! A STARTTLS turns a plain transport into TLS in place ([`Transport::start_tls`]);
//! only bytes read from the socket after that go to rustls, so whatever a client
//! pipelined behind its STARTTLS (read before the switch, in the session's buffer)
//! can never be taken as coming from inside TLS.

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::{TcpStream, UnixStream};

/// A connection's socket: TCP, or a local (unix-domain) stream socket, which only
/// an LMTP transport's `-F UNIX:/path` opens.
pub enum Sock {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A unix-domain stream connection.
    Unix(UnixStream),
}

impl From<TcpStream> for Sock {
    fn from(s: TcpStream) -> Sock {
        Sock::Tcp(s)
    }
}

impl Sock {
    /// The pending socket error (SO_ERROR): how a non-blocking connect ended.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Tcp(s) => s.take_error(),
            Sock::Unix(s) => s.take_error(),
        }
    }

    /// Whether the connection is up (a peer is there).
    pub fn connected(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.peer_addr().map(|_| ()),
            Sock::Unix(s) => s.peer_addr().map(|_| ()),
        }
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for Sock {
    fn register(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.register(r, t, i),
            Sock::Unix(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &mio::Registry, t: mio::Token, i: mio::Interest) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.reregister(r, t, i),
            Sock::Unix(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.deregister(r),
            Sock::Unix(s) => s.deregister(r),
        }
    }
}

/// The server's TLS configuration, shared by every server connection.
#[cfg(feature = "tls")]
pub type ServerTls = std::sync::Arc<rustls::ServerConfig>;
/// Without the `tls` feature there is none: `Option<ServerTls>` is always `None`.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub enum ServerTls {}

/// Most TLS output held in rustls before writes stop being taken (back-pressure).
pub const TLS_OUT_LIMIT: usize = 64 * 1024;

/// A TLS session over a socket.
#[cfg(feature = "tls")]
pub struct TlsStream {
    sock: Sock,
    conn: crate::tls::Connection,
    /// When the handshake must be over.
    pub handshake_deadline: Instant,
    /// The handshake's failure, for the log.
    pub error: Option<String>,
}

/// A connection's transport.
pub enum Transport {
    /// The socket itself.
    Plain(Sock),
    /// TLS over it.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
    /// Between the two (only while switching).
    Switching,
}

impl Transport {
    /// The socket, for the poller.
    pub fn socket(&mut self) -> Option<&mut Sock> {
        match self {
            Transport::Plain(s) => Some(s),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => Some(&mut t.sock),
            Transport::Switching => None,
        }
    }

    /// Whether TLS is on (handshake done or not).
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Transport::Tls(_) = self {
            return true;
        }
        false
    }

    /// Whether a TLS handshake is in progress.
    pub fn handshaking(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.conn.is_handshaking() && t.error.is_none(),
            _ => false,
        }
    }

    /// The handshake deadline, while handshaking.
    pub fn handshake_deadline(&self) -> Option<Instant> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) if self.handshaking() => Some(t.handshake_deadline),
            _ => None,
        }
    }

    /// Version and cipher, once the handshake is done.
    pub fn describe(&self) -> Option<String> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) if !t.conn.is_handshaking() => crate::tls::describe(&t.conn),
            _ => None,
        }
    }

    /// Why TLS failed, if it did.
    pub fn tls_error(&self) -> Option<&str> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.error.as_deref(),
            _ => None,
        }
    }

    /// Starts TLS on a plain transport (after STARTTLS, or at once for implicit
    /// TLS). Nothing read before this point reaches rustls.
    #[cfg(feature = "tls")]
    pub fn start_tls(&mut self, conn: crate::tls::Connection, deadline: Instant) {
        if let Transport::Plain(sock) = std::mem::replace(self, Transport::Switching) {
            let mut conn = conn;
            conn.set_buffer_limit(Some(TLS_OUT_LIMIT));
            *self = Transport::Tls(Box::new(TlsStream {
                sock,
                conn,
                handshake_deadline: deadline,
                error: None,
            }));
        }
    }

    /// Sends TLS's close_notify (best effort) before the socket closes.
    pub fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Transport::Tls(t) = self {
            t.conn.send_close_notify();
            let _ = t.push();
        }
    }
}

#[cfg(feature = "tls")]
impl TlsStream {
    /// Writes pending TLS records; `Ok(true)` when all are out.
    fn push(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        self.error = Some(e.to_string());
                        let _ = self.push(); // the alert
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    // Handshake messages to answer.
                    self.push()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.push()? && self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.push()?;
        Ok(n)
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.read(buf),
            Transport::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.write(buf),
            Transport::Switching => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Pushes out what TLS still holds; `WouldBlock` while some is left.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => {
                if t.push()? {
                    Ok(())
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
            _ => Ok(()),
        }
    }
}
