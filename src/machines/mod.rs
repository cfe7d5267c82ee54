//! Decisions as sans-IO machines the daemon drives: each takes an event and the time
//! and answers with what to do, and is tested state by state without a socket.

pub mod customer;
pub mod delivery;
pub mod dialer;
pub mod etrn_desk;
pub mod local_runs;
