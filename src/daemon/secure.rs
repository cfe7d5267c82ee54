//! TLS and AUTH in the loop: starting TLS on a server connection once the `220` to
//! STARTTLS is written (or at once on an implicit-TLS listener), noticing the end of
//! each handshake, handing AUTH checks to the auth helper and its verdicts back to
//! the sessions, slowing failures per client address and per identity, and
//! applying what the auth helper (re)loaded: the certificate and key, the AUTH
//! offer, the client side's credentials and TLS policy.

use crate::logging::sanitize;
use std::time::{Duration, Instant};

use super::io::conn::{Conn, ConnId};
use super::io::transport::{ServerTls, Transport};
use super::{Core, Io, Security, GUARD};
use crate::auth::authinfo::AuthInfo;
use crate::auth::guard::{FromGuard, Guard, Loaded};
use crate::auth::Verdict;
use crate::config::tls_policy::TlsPolicy;
use crate::smtp::server::{AuthOffer, AuthOutcome};

/// AUTH at the auth helper: the checks sessions asked for this turn, those sent
/// (by sequence number: the connection, user and address), token requests of
/// deliveries, and recent failures per address and identity.
#[derive(Default)]
pub(super) struct AuthChecks {
    pub(super) asked: Vec<(ConnId, crate::auth::Check)>,
    pub(super) waiting: std::collections::HashMap<u64, (ConnId, String, std::net::IpAddr)>,
    pub(super) tokens: std::collections::HashMap<u64, ConnId>,
    pub(super) throttle: crate::auth::throttle::Throttle,
}

/// What the client side presents and demands (`db/authinfo`, `db/tls_policy`).
#[derive(Debug, Clone, Default)]
pub struct OutboundSecurity {
    /// Credentials per next hop.
    pub authinfo: AuthInfo,
    /// TLS levels per destination.
    pub policy: TlsPolicy,
}

/// Starts TLS on a server connection whose session sent `220` to STARTTLS and whose
/// output is all written, and tells the session when the handshake is done.
pub(super) fn tls_step(
    conn: &mut Conn<Transport>,
    sec: &mut Security,
    server: Option<&ServerTls>,
    now: Instant,
) {
    #[cfg(not(feature = "tls"))]
    let _ = server; // always None
    #[cfg(feature = "tls")]
    {
        let written = conn
            .role
            .server()
            .is_some_and(|c| c.session.awaits_tls() && c.session.pending_output().is_empty());
        if written && !conn.stream.is_tls() && std::io::Write::flush(&mut conn.stream).is_ok() {
            start_server_tls(conn, sec, server, now);
        }
    }
    let Some(c) = conn.role.server() else { return };
    if c.handshaking && !conn.stream.handshaking() {
        c.handshaking = false;
        sec.handshakes = sec.handshakes.saturating_sub(1);
        if let Some(info) = conn.stream.describe() {
            c.session.tls_on(info, now);
        }
    }
}

/// Switches a server connection to TLS (counted against the handshake cap); without a
/// server configuration the connection is dropped.
#[cfg(feature = "tls")]
fn start_server_tls(
    conn: &mut Conn<Transport>,
    sec: &mut Security,
    server: Option<&ServerTls>,
    now: Instant,
) {
    let Some(c) = conn.role.server() else { return };
    match server.map(crate::tls::server_connection) {
        Some(Ok(tls)) => {
            conn.stream
                .start_tls(tls.into(), now + super::HANDSHAKE_TIMEOUT);
            c.handshaking = true;
            sec.handshakes += 1;
        }
        _ => conn.dead = true,
    }
}

impl Core {
    /// An implicit-TLS listener's client: TLS from the first octet.
    pub(super) fn start_implicit_tls(&mut self, io: &mut Io, id: ConnId, now: Instant) {
        #[cfg(feature = "tls")]
        if let Some(conn) = io.conns.slab.get_mut(id) {
            start_server_tls(conn, &mut self.sec, io.tls_server.as_ref(), now);
        }
        #[cfg(not(feature = "tls"))]
        let _ = (io, id, now);
    }

    /// Takes the auth helper and applies its first load (at start: an error stops
    /// the daemon).
    pub fn set_guard(
        &mut self,
        io: &mut Io,
        mut guard: Guard,
        loaded: Loaded,
    ) -> Result<(), String> {
        self.apply_load(io, loaded)?;
        log::info!("daemon auth-helper pid={}", guard.pid());
        if let Err(e) = io.registry.register(
            guard.source(),
            GUARD,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        ) {
            return Err(format!("cannot watch the auth helper: {e}"));
        }
        io.guard = Some(guard);
        Ok(())
    }

    /// Applies a load: all of it, or (on any error) none of it.
    fn apply_load(&mut self, io: &mut Io, l: Loaded) -> Result<(), String> {
        let main = &self.config.main;
        let db = main.mailvar.join("db");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let errs = |e: Vec<crate::lex::ConfigError>| {
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let authinfo = AuthInfo::parse(&db.join("authinfo"), &text(&l.authinfo)).map_err(errs)?;
        let policy =
            TlsPolicy::parse(&db.join("tls_policy"), &text(&l.tls_policy)).map_err(errs)?;
        #[cfg(feature = "tls")]
        let server = match (&main.tls_cert, &main.tls_key) {
            (Some(c), Some(k)) => Some(crate::tls::server_config(
                &l.cert,
                &l.key,
                &c.display().to_string(),
                &k.display().to_string(),
            )?),
            _ => None,
        };
        #[cfg(not(feature = "tls"))]
        let server = None;
        self.sec.tls = server.is_some();
        io.tls_server = server;
        self.sec.auth = AuthOffer {
            enabled: l.entries > 0,
            cram: l.cram,
        };
        self.outbound_sec = OutboundSecurity { authinfo, policy };
        #[cfg(feature = "tls")]
        {
            io.tls_roots = None;
        }
        log::info!(
            "daemon secrets-loaded tls={} auth-identities={} cram-md5={} client-credentials={} tls-policies={}",
            if self.sec.tls { "yes" } else { "no" },
            l.entries,
            if l.cram { "yes" } else { "no" },
            self.outbound_sec.authinfo.entries.len(),
            self.outbound_sec.policy.len()
        );
        Ok(())
    }

    /// The auth helper spoke (or its socket can take more).
    pub(super) fn guard_event(&mut self, io: &mut Io, now: Instant) {
        let Some(g) = io.guard.as_mut() else {
            return;
        };
        g.flush();
        let msgs = g.read();
        let dead = g.dead;
        for m in msgs {
            match m {
                FromGuard::Reload(Ok(l)) => {
                    if let Err(e) = self.apply_load(io, l) {
                        log::error!("config reload-failed {e}: the old secrets stay in force");
                    }
                }
                FromGuard::Reload(Err(e)) => {
                    log::error!("config reload-failed {e}: the old secrets stay in force")
                }
                FromGuard::Verdict(seq, v) if self.odmr_owns(seq) => {
                    self.atrn_verdict(io, seq, Some(v), now)
                }
                FromGuard::Verdict(seq, v) => self.verdict(io, seq, Some(v), now),
                FromGuard::Token(seq, t) => self.token_came(io, seq, t, now),
            }
        }
        if dead {
            if let Some(mut g) = io.guard.take() {
                log::error!(
                    "daemon auth-helper-died pid={}: AUTH answers 454 until a new one is up",
                    g.pid()
                );
                let _ = &io.registry.deregister(g.source());
            }
            self.ask_supervisor(io, crate::local::supervisor::Kind::Auth);
            for seq in self.auth.tokens.keys().copied().collect::<Vec<_>>() {
                self.token_came(io, seq, Err("the auth helper died".into()), now);
            }
            let seqs: Vec<u64> = self.auth.waiting.keys().copied().collect();
            for s in seqs {
                self.verdict(io, s, None, now);
            }
            self.odmr_guard_lost(io, now);
        }
    }

    /// The token a delivery's AUTH waited for (or why there is none).
    fn token_came(&mut self, io: &mut Io, seq: u64, t: Result<Vec<u8>, String>, now: Instant) {
        let Some(id) = self.auth.tokens.remove(&seq) else {
            return;
        };
        let token = match t {
            Ok(t) => Some(t),
            Err(why) => {
                log::warn!("smtp token-failed error=\"{}\"", sanitize(why.as_bytes()));
                None
            }
        };
        if let Some(s) = io
            .conns
            .get_mut(id)
            .and_then(|l| l.role.client())
            .and_then(|c| c.session.as_mut())
        {
            s.token(token, now);
        }
        self.drive_out(io, id, now);
    }

    /// Hands this turn's AUTH checks to the auth helper, but for an identity past
    /// its failure budget ([`crate::auth::throttle`]): 454, unchecked.
    pub(super) fn send_auth_checks(&mut self, io: &mut Io, now: Instant) {
        for (id, check) in std::mem::take(&mut self.auth.asked) {
            let ip = match io.conns.get_mut(id).and_then(|l| l.role.server()) {
                Some(c) => c.ip,
                None => continue,
            };
            let exempt = self.config.main.mynetworks.iter().any(|n| n.contains(ip));
            let admit = self
                .auth
                .throttle
                .admit(check.user(), ip, exempt, self.time.unix);
            if admit == crate::auth::throttle::Admit::Locked {
                log::warn!(
                    "smtp auth-locked address={ip} user={}: too many failures for this identity; not checked",
                    sanitize(check.user().as_bytes())
                );
                self.answer_auth(io, id, AuthOutcome::Unavailable, now);
                continue;
            }
            match io.guard.as_mut().filter(|g| !g.dead) {
                Some(g) => {
                    let seq = g.ask(&check);
                    self.auth
                        .waiting
                        .insert(seq, (id, check.user().to_string(), ip));
                }
                None => self.answer_auth(io, id, AuthOutcome::Unavailable, now),
            }
        }
    }

    fn verdict(&mut self, io: &mut Io, seq: u64, v: Option<Verdict>, now: Instant) {
        let Some((id, user, ip)) = self.auth.waiting.remove(&seq) else {
            return;
        };
        use crate::auth::throttle::Checked;
        let unix = self.time.unix;
        let how = match &v {
            Some(Verdict::Ok(_)) => Checked::Ok,
            Some(Verdict::No) => Checked::Wrong,
            Some(Verdict::Unknown) => Checked::Unknown,
            None => Checked::Unavailable,
        };
        let wait = self.auth.throttle.checked(&user, ip, how, unix);
        let outcome = match v {
            Some(Verdict::Ok(d)) => AuthOutcome::Ok(d),
            Some(Verdict::No | Verdict::Unknown) => AuthOutcome::Failed(wait),
            None => AuthOutcome::Unavailable,
        };
        self.answer_auth(io, id, outcome, now);
    }

    fn answer_auth(&mut self, io: &mut Io, id: ConnId, outcome: AuthOutcome, now: Instant) {
        if let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.server()) {
            let ctx = session_ctx!(self);
            c.session.handle_auth(outcome, now, &ctx);
            self.service(io, id, now);
        }
    }
}

impl Io {
    /// SIGHUP: the auth helper reads the secrets, certificate and key again.
    pub(super) fn reload_secrets(&mut self) {
        if let Some(g) = self.guard.as_mut() {
            g.reload();
        }
    }
}

/// Most next hops remembered for the `may` fall-back.
pub const MAX_TLS_FAILED: usize = 10_000;
/// How long a failed opportunistic handshake sends a next hop to plaintext.
pub const TLS_FALLBACK_FOR: Duration = Duration::from_secs(3600);

pub use crate::vocab::bare_host;

/// A client connection whose TLS handshake is over: the session learns it (or its
/// failure, remembered for the `may` fall-back).
pub(super) fn client_tls_step(
    conn: &mut Conn<Transport>,
    tls_failed: &mut std::collections::HashMap<std::net::SocketAddr, Instant>,
    now: Instant,
) {
    if !conn.stream.is_tls() || conn.stream.handshaking() {
        return;
    }
    let describe = conn.stream.describe();
    let failed = conn.stream.tls_error().is_some();
    let Some(c) = conn.role.client() else { return };
    let addr = c.addr;
    let Some(s) = c.session.as_mut() else { return };
    if !s.awaits_tls() {
        return;
    }
    match describe {
        Some(info) if !failed => s.tls_on(info, now),
        _ => {
            if tls_failed.len() >= MAX_TLS_FAILED {
                tls_failed.retain(|_, t| now.saturating_duration_since(*t) < TLS_FALLBACK_FOR);
                if tls_failed.len() >= MAX_TLS_FAILED {
                    tls_failed.clear();
                }
            }
            tls_failed.insert(addr, now);
        }
    }
}

impl Core {
    /// What a delivery connection to `addr` (hop `hop_host`, for route host
    /// `route_host`) needs of TLS and AUTH, from `db/tls_policy`, `SMTP_TLS` and
    /// `db/authinfo`; the certificate check goes on the connection.
    pub(super) fn client_security(
        &mut self,
        io: &mut Io,
        id: ConnId,
        route_host: &str,
        hop_host: &str,
        addr: std::net::SocketAddr,
        now: Instant,
    ) -> crate::smtp::client::ClientSecurity {
        use crate::vocab::TlsLevel;
        let host = bare_host(route_host).to_ascii_lowercase();
        let port = addr.port();
        let policy = self.outbound_sec.policy.lookup(&host, port, &host).cloned();
        let mut level = policy
            .as_ref()
            .map_or(self.config.main.smtp_tls, |p| p.level);
        let implicit =
            level != TlsLevel::None && (policy.as_ref().is_some_and(|p| p.implicit) || port == 465);
        if level == TlsLevel::May && !implicit {
            let recent = self
                .outbound
                .tls_failed
                .get(&addr)
                .is_some_and(|t| now.saturating_duration_since(*t) < TLS_FALLBACK_FOR);
            if recent {
                log::info!(
                    "smtp client-tls skipped address={addr}: a handshake failed within the hour"
                );
                level = TlsLevel::None;
            }
        }
        let credentials = self
            .outbound_sec
            .authinfo
            .lookup(&host, port)
            .map(crate::smtp::client::Credentials::from_entry);
        #[cfg(feature = "tls")]
        {
            let matches = policy
                .as_ref()
                .map(|p| p.matches.clone())
                .unwrap_or_default();
            let hop = bare_host(hop_host);
            let roots = if matches!(level, TlsLevel::Verify | TlsLevel::Secure) {
                self.roots(io)
                    .map_err(|e| log::error!("smtp client-tls roots-failed error=\"{e}\""))
                    .ok()
            } else {
                None
            };
            let plan = crate::tls::plan(level, &matches, &host, hop, roots);
            if let Some(c) = io.conns.get_mut(id).and_then(|l| l.role.client()) {
                c.tls_plan = plan;
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = (io, id, hop_host);
        crate::smtp::client::ClientSecurity {
            level,
            implicit,
            credentials,
        }
    }

    /// The CA roots (`TLS_CA_FILE` or the system bundle), read once.
    #[cfg(feature = "tls")]
    fn roots(&mut self, io: &mut Io) -> Result<std::sync::Arc<rustls::RootCertStore>, String> {
        if let Some(r) = &io.tls_roots {
            return Ok(r.clone());
        }
        let r = crate::tls::roots(self.config.main.tls_ca_file.as_deref())?;
        io.tls_roots = Some(r.clone());
        Ok(r)
    }
}

impl Io {
    /// Starts TLS on a client connection (after `220` to STARTTLS, or at connect for
    /// implicit TLS).
    pub(super) fn start_client_tls(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        #[cfg(feature = "tls")]
        {
            let plan = conn.role.client().and_then(|c| c.tls_plan.clone());
            let tls = plan
                .ok_or_else(|| "no TLS plan".to_string())
                .and_then(|(check, sni)| {
                    crate::tls::client_connection(crate::tls::client_config(check), &sni)
                });
            match tls {
                Ok(c) => conn
                    .stream
                    .start_tls(c.into(), now + super::HANDSHAKE_TIMEOUT),
                Err(e) => {
                    if let Some(s) = conn.role.client().and_then(|c| c.session.as_mut()) {
                        s.tls_failed(&e);
                    }
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = now;
            if let Some(s) = conn.role.client().and_then(|c| c.session.as_mut()) {
                s.tls_failed("this etrnd was built without TLS");
            }
        }
    }
}
