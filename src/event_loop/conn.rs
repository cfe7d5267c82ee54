//! One accepted SMTP connection: the socket, its session, and the message it is
//! writing to the spool.

use std::io::{self, Read, Write};
use std::net::IpAddr;

use mio::net::TcpStream;

use crate::smtp::server::ServerSession;
use crate::spool::{Incoming, SpoolError};

/// A connection slot's contents.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// The client's address (canonical, for per-address limits).
    pub ip: IpAddr,
    /// The SMTP session.
    pub session: ServerSession,
    /// The message being written, if any.
    pub incoming: Option<Incoming>,
    /// Its envelope, for the scheduler once it is committed.
    pub envelope: Option<Box<crate::spool::Envelope>>,
    /// Why the spool could not start the message, reported at its end.
    pub spool_error: Option<SpoolError>,
    /// The socket may have more to read (edge-triggered readiness not yet drained).
    pub readable: bool,
    /// The peer closed its side or the socket failed.
    pub dead: bool,
}

/// What a read attempt found.
pub enum ReadResult {
    /// Octets read into the buffer.
    Data(usize),
    /// Nothing more for now.
    WouldBlock,
    /// End of stream or an error.
    Closed,
}

impl Conn {
    /// Reads once into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> ReadResult {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return ReadResult::Closed,
                Ok(n) => return ReadResult::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadResult::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadResult::Closed,
            }
        }
    }

    /// Writes as much pending output as the socket takes.
    pub fn flush(&mut self) {
        while !self.session.pending_output().is_empty() {
            match self.stream.write(self.session.pending_output()) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => self.session.consume_output(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }
}
