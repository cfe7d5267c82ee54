//! Decisions as sans-IO machines the daemon drives: each takes an event and the time
//! and answers with what to do, and is tested state by state without a socket:
//! a delivery, local runs, the ETRN and ATRN desks, the dialer, the ODMR customer.

pub mod atrn_desk;
pub mod customer;
pub mod delivery;
pub mod dialer;
pub mod etrn_desk;
pub mod local_runs;
