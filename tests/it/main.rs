//! Integration tests: the real `etrnd` binary on loopback, spoken to over SMTP.

mod commands;
mod config_errors;
mod crash;
mod interop;
mod limits;
mod scripts;
mod util;
