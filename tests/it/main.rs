//! Integration tests: the real `etrnd` binary on loopback, spoken to over SMTP.

mod alias_targets;
mod architecture;
mod auth_guessing;
mod chunking;
mod commands;
mod config_errors;
mod control_trust;
mod crash;
mod delivery;
mod dovecot;
mod dsn;
mod etrn;
#[cfg(feature = "tls")]
mod exim;
mod fakedns;
mod faults;
mod fidelity;
mod foreground;
mod holdstore;
mod imports;
mod install;
mod installed_mta;
mod interop;
mod limits;
mod links;
mod lmtp;
mod local;
mod local_bounds;
mod local_trust;
mod odmr;
mod openwrt;
mod ordering;
mod peer_faults;
#[cfg(feature = "tls")]
mod postfix_modern;
#[cfg(feature = "tls")]
mod postfix_tls;
mod powerloss;
mod queue;
mod recipients;
mod resolve;
mod scripts;
mod sendmail_modes;
mod service;
mod sink;
#[cfg(feature = "tls")]
mod smarthost_auth;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
mod tls_client;
mod util;
