//! SMTP vocabulary shared by the server (and later the client): domains, mailboxes,
//! paths, and the protocol limits of RFC 5321 §4.5.3.
//!
//! Every type here is built only by parsing: once a [`Domain`] or [`Mailbox`] exists it
//! is valid, so the spool, the router and the scheduler never see raw network text.
//! Parsers take bytes or `&str` and return a typed value or a typed error; they never
//! panic on any input.

pub mod atrn;
pub mod body;
pub mod client;
pub mod command;
pub use crate::vocab::dsn;
pub mod etrn_target;
pub mod line;
pub mod policy;
pub mod reply;
pub mod sasl;
pub mod server;
pub mod trace;

pub use crate::vocab::address::*;
