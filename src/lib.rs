//! etrnd: a small, fast, crash-safe mail transfer agent that holds mail and releases
//! it on demand with SMTP ETRN (RFC 1985).
//!
//! # Architecture
//!
//! One process, one thread, one `mio` event loop ([`daemon`]). The loop keeps the
//! descriptors ([`daemon::io`]: listeners, connections, the helpers' and children's
//! sockets, the clock); the components keep the decisions, as sans-IO machines that
//! take bytes or events and `now` and hand back bytes, events, actions and
//! deadlines:
//!
//! ```text
//!   network, helpers, children                         disk
//!          |  bytes, verdicts, SIGCHLD                  ^
//!          v                                            |
//!   daemon::io (Io: conns, listeners, control, helper, guard; Clock)
//!          |  events                         ^ actions  |
//!          v                                 |          |
//!   daemon (Core: one component per file) ---+---> store::spool (group commit),
//!     |  inbound:  smtp::server::ServerSession           store::notes
//!     |              '-> route::Router (files only, no DNS)
//!     |  schedule: sched::Scheduler (due / ready / held, release, expiry)
//!     |  deliver:  machines::delivery::Delivery -> smtp::client::ClientSession
//!     |              '-> dns::Dns (files first, then the stub resolver)
//!     |  local:    machines::local_runs -> local::helper (as the recipient)
//!     |  ETRN:     machines::etrn_desk        links: machines::dialer
//!     |  ODMR:     machines::atrn_desk (provider), machines::customer (customer)
//!     |  AUTH:     auth::guard (the helper holding the secrets)
//!     '  bounces:  message::bounce
//! ```
//!
//! * [`config`] parses `etrnd.conf`, `db/routes`, `db/localnames`, `db/aliases` and
//!   the rest into typed values, reporting `file:line: message`.
//! * [`route`] holds the route trie (ZMailer lookup order) and decides per recipient:
//!   local user, `channel!host`, or refusal (no open relay).
//! * [`smtp`] holds the framing of lines and of DATA, the command parser, the reply
//!   catalogue and the server and client sessions; [`vocab`] the shared vocabulary.
//! * [`sched`] keeps threads (channel, host), limits, retries, holds and releases.
//! * [`dns`] resolves next hops: the hosts file first, then a sans-IO stub resolver.
//! * [`machines`] are the decisions the daemon drives: a delivery, local runs, the
//!   ETRN desk, the dialer, the ODMR customer.
//! * [`store`] is the flat file-per-message spool with its durable commit order, the
//!   hold store and the held destinations' notes.
//! * [`local`] delivers to mailboxes, files and commands, behind a privileged helper.
//! * [`tools`] are the one-shot commands (`sendmail`, `mailq`, `etrnd queue` …).
//! * [`sys`] is the only module with `unsafe`; only the I/O layer calls it
//!   (`tests/it/architecture.rs`).
//!
//! Trust boundary: only `smtp::line`, `smtp::command`, `smtp::reply`'s client parser
//! and the DNS decoder see raw network bytes; they return typed values or typed
//! errors and never panic.

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
