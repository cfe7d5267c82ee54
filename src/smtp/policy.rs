//! What a server session may know of the world: the narrow view of the
//! configuration ([`Policy`]), the per-call facts ([`Context`]), the routing verdict
//! of a recipient, and the AUTH offer and verdicts. Re-exported by
//! `smtp::server`.

use std::time::Duration;

use super::reply::Reply;

/// What AUTH this server offers (from the auth helper's last load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthOffer {
    /// `db/secrets` has entries.
    pub enabled: bool,
    /// Some entry can answer CRAM-MD5.
    pub cram: bool,
}

/// The verdict on an AUTH exchange, as the loop hands it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated, with the domains the identity may release.
    Ok(Vec<String>),
    /// Refused; the reply waits this long (failures are slowed).
    Failed(Duration),
    /// The check could not be made now.
    Unavailable,
}

/// What a session may know of the configuration: a narrow view the loop builds
/// from it, so the session module stands on the vocabulary, not on the whole
/// configuration or the router.
pub struct Policy<'a> {
    /// Our host name (greeting, replies).
    pub hostname: &'a str,
    /// How long to wait before the greeting (`GREET_PAUSE`).
    pub greet_pause: Duration,
    /// Largest message accepted (`SIZE`).
    pub max_message_size: u64,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Whether ETRN is offered.
    pub etrn: bool,
    /// Who may send ETRN (`None`: anyone).
    pub etrn_allow: Option<&'a [crate::vocab::Cidr]>,
    /// Trusted client networks (`MYNETWORKS`).
    pub mynetworks: &'a [crate::vocab::Cidr],
    /// Where each recipient goes.
    pub recipients: &'a dyn Recipients,
    /// Whether a server certificate is loaded (STARTTLS can be offered).
    pub tls: bool,
    /// What AUTH is offered.
    pub auth: AuthOffer,
    /// `ETRN_ALLOW` has `auth`.
    pub etrn_auth: bool,
    /// Listener kinds where CRAM-MD5 is offered without TLS (`AUTH_CLEAR_CRAM`).
    pub clear_cram: &'a [crate::vocab::ListenKind],
}

/// The routing of a recipient, as the session needs it.
pub trait Recipients {
    /// The destinations of `rcpt` (a `trusted` client may relay), or why not.
    fn verdict(&self, rcpt: &crate::vocab::Mailbox, trusted: bool) -> RcptVerdict;
}

/// What becomes of one RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptVerdict {
    /// Accepted, for these destinations (and addresses, for aliases elsewhere).
    Accept(Vec<crate::vocab::Target>),
    /// Refused with this reply; `why` is for the log.
    Refuse(Reply, String),
    /// Routed, but no transport serves a destination (after a reload): try later.
    NoTransport(String),
}

/// Per-call facts the session needs besides its own state.
pub struct Context<'a> {
    /// The configuration, as far as the session may see it.
    pub policy: Policy<'a>,
    /// Whether the spool is short of space (`MAIL` gets 452 4.3.1).
    pub disk_low: bool,
    /// Wall-clock time, seconds since the epoch (for the envelope's arrival time).
    pub unix_time: u64,
    /// Too many TLS handshakes are in progress: STARTTLS gets 454 now.
    pub tls_busy: bool,
    /// Held destinations (`channel!host`) at `HOLD_QUOTA`: RCPT to them gets 452.
    pub held_full: Option<&'a std::collections::HashSet<String>>,
    /// A random number of this loop turn (the Message-ID a local client's message
    /// lacks is made with it).
    pub nonce: u64,
}
