//! The one-shot commands a user or the operator runs beside the daemon: `mailq`,
//! `etrnd queue`, `etrnd clients`, `sendmail` (and `-bs`), and the ETRN/ATRN and
//! control-socket clients. Each reads the configuration and the spool, or talks to
//! the running daemon; none is part of it.

pub mod clients;
pub mod etrn_client;
pub mod mailq;
pub mod queue;
pub mod sendmail;
pub mod sendmail_bs;
