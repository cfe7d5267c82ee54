//! The words of secure transport that several modules share: what a listener
//! serves and the outbound TLS levels (Postfix's names).

/// What a listener serves (`LISTEN addr:port/kind`, DESIGN.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenKind {
    /// Port 25: STARTTLS offered when a certificate is set.
    Smtp,
    /// Submission: AUTH before MAIL, STARTTLS before AUTH.
    Submission,
    /// Implicit TLS (RFC 8314).
    Smtps,
    /// On-demand relay (RFC 2645 §4): EHLO, AUTH, ATRN and QUIT only.
    Odmr,
}

impl ListenKind {
    /// The kind's name in `LISTEN`.
    pub fn name(self) -> &'static str {
        match self {
            ListenKind::Smtp => "smtp",
            ListenKind::Submission => "submission",
            ListenKind::Smtps => "smtps",
            ListenKind::Odmr => "odmr",
        }
    }

    /// Parses a kind's name.
    pub fn parse(s: &str) -> Option<ListenKind> {
        [
            ListenKind::Smtp,
            ListenKind::Submission,
            ListenKind::Smtps,
            ListenKind::Odmr,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

/// Outbound TLS levels (`SMTP_TLS`, `db/tls_policy`; Postfix's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsLevel {
    /// Never TLS.
    None,
    /// TLS when offered, certificate not checked.
    May,
    /// TLS or wait, certificate not checked.
    Encrypt,
    /// Pinned certificate fingerprints.
    Fingerprint,
    /// CA-verified, name = the host connected to.
    Verify,
    /// CA-verified, name = the next-hop domain (or `match=`).
    Secure,
}

impl TlsLevel {
    /// Parses a level's name.
    pub fn parse(s: &str) -> Option<TlsLevel> {
        Some(match s {
            "none" => TlsLevel::None,
            "may" => TlsLevel::May,
            "encrypt" => TlsLevel::Encrypt,
            "fingerprint" => TlsLevel::Fingerprint,
            "verify" => TlsLevel::Verify,
            "secure" => TlsLevel::Secure,
            _ => return None,
        })
    }

    /// The level's name.
    pub fn name(self) -> &'static str {
        match self {
            TlsLevel::None => "none",
            TlsLevel::May => "may",
            TlsLevel::Encrypt => "encrypt",
            TlsLevel::Fingerprint => "fingerprint",
            TlsLevel::Verify => "verify",
            TlsLevel::Secure => "secure",
        }
    }

    /// Whether the level never falls back to plaintext.
    pub fn mandatory(self) -> bool {
        self >= TlsLevel::Encrypt
    }
}
