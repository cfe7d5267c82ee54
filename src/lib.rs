//! etrnd: a small, fast, crash-safe mail transfer agent that holds mail and releases
//! it on demand with SMTP ETRN (RFC 1985).
//!
//! # Architecture
//!
//! One process, one thread, one `mio` event loop ([`event_loop`]) that owns every
//! socket, file descriptor and timer. Protocol logic lives in sans-IO state machines
//! that take bytes and `now` and hand back bytes, events and deadlines:
//!
//! ```text
//!         bytes                     typed values                typed values
//! socket ------> event_loop ------> smtp::server::ServerSession ----> spool::Spool
//!   ^               |                   |  routes each RCPT with
//!   '---- bytes ----'                   '--> route::Router (files only, no DNS)
//! ```
//!
//! * [`config`] parses `etrnd.conf`, `db/routes`, `db/localnames`, `db/aliases` into
//!   typed values, reporting `file:line: message`.
//! * [`route`] holds the route trie (ZMailer lookup order) and decides per recipient:
//!   local user, `channel!host`, or refusal (no open relay).
//! * [`smtp`] holds the vocabulary (domains, mailboxes), the framing of lines and of
//!   DATA, the command parser, the reply catalogue and the server session.
//! * [`spool`] is the flat file-per-message queue with its durable commit order.
//! * [`sys`] is the only module with `unsafe`: daemonising, signals, user lookups.
//!
//! Trust boundary: only `smtp::line`, `smtp::command` (and later `smtp::reply`'s
//! client parser and the DNS decoder) see raw network bytes; they return typed values
//! or typed errors and never panic.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod accounts;
pub mod auth;
pub mod buf;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod lex;
pub mod local;
pub mod logging;
pub mod machines;
pub mod message;
pub mod route;
pub mod sched;
pub mod smtp;
pub mod store;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tools;
pub mod vocab;
