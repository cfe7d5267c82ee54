//! Configuration: every file parsed into typed, checked values (DESIGN.md §4).
//!
//! `load` reads `etrnd.conf`, then `$MAILVAR/db/routes`, `db/localnames` and
//! `db/aliases`, and reports every problem as a `file:line: message` line. It does no
//! network I/O and never consults DNS.

pub mod generic;
pub mod hosts;
pub mod links;
pub mod main_conf;
pub mod recipients;
pub mod scheduler;
pub mod show;
pub mod tls_policy;
pub mod transport;

pub use crate::lex;
pub use crate::route::{file as routes, names};
pub use crate::vocab::cidr;

use std::path::Path;

pub use lex::ConfigError;

use hosts::{self as dnsfiles, HostsTable, ResolvConf, ResolveConf};
use main_conf::HostSource;
pub use main_conf::{ListenKind, MainConf, TlsLevel};

use crate::route::{RouteTrie, Router};
use crate::vocab::Domain;

/// The whole configuration.
#[derive(Debug)]
pub struct Config {
    /// `etrnd.conf`.
    pub main: MainConf,
    /// Routes, local names and aliases.
    pub router: Router,
    /// Name resolution: order, hosts file, DNS servers.
    pub resolve: ResolveConf,
    /// `scheduler.conf` (the built-in clauses when the file does not exist).
    pub sched: scheduler::SchedulerConf,
    /// `db/generic`: masquerading of mail sent over SMTP (empty when absent).
    pub generic: generic::Generic,
    /// `db/recipients`: the valid recipients of routed domains (empty when absent).
    pub recipients: recipients::Recipients,
}

impl Config {
    /// The view of the configuration a server session gets.
    pub fn policy(&self) -> crate::smtp::server::Policy<'_> {
        crate::smtp::server::Policy {
            hostname: &self.main.hostname,
            greet_pause: self.main.greet_pause,
            max_message_size: self.main.max_message_size,
            max_recipients: self.main.max_recipients,
            etrn: self.main.etrn,
            etrn_allow: self.main.etrn_allow.as_deref(),
            mynetworks: &self.main.mynetworks,
            recipients: self,
            tls: false,
            auth: crate::smtp::server::AuthOffer::default(),
            etrn_auth: self.main.etrn_auth,
            clear_cram: &self.main.auth_clear_cram,
        }
    }

    /// Whether a transport serves `dest` (`None`), or why not.
    pub fn unserved(
        &self,
        dest: &crate::store::spool::Destination,
    ) -> Option<scheduler::NoTransport> {
        let (channel, host) = match dest {
            crate::store::spool::Destination::Local(u) => ("local", u.as_str()),
            crate::store::spool::Destination::Remote { channel, host } => {
                (channel.as_str(), host.as_str())
            }
        };
        self.sched.check_destination(channel, host).err()
    }
}

impl crate::smtp::server::Recipients for Config {
    fn verdict(
        &self,
        rcpt: &crate::vocab::Mailbox,
        trusted: bool,
    ) -> crate::smtp::server::RcptVerdict {
        use crate::route::Decision;
        use crate::smtp::reply::Reply;
        use crate::smtp::server::RcptVerdict;
        let routed = self.router.route(rcpt, trusted);
        let dests = match routed.decision {
            Decision::Local(user) => match self.router.expand(&user) {
                Ok(d) => d,
                Err(why) => return RcptVerdict::Refuse(Reply::UNKNOWN_USER, why),
            },
            // A routed domain the recipients file lists takes its listed users only
            // (Postfix's relay_recipient_maps): nothing is held that would bounce.
            Decision::Remote { .. }
                if self.recipients.check(rcpt) == recipients::Check::Unknown =>
            {
                return RcptVerdict::Refuse(
                    Reply::UNKNOWN_RELAY_USER,
                    "not in db/recipients, which lists its domain".into(),
                );
            }
            Decision::Remote { channel, host } => {
                vec![crate::vocab::Target::to(
                    crate::vocab::Destination::Remote { channel, host },
                )]
            }
            Decision::Refuse(r) => return RcptVerdict::Refuse(r, routed.why),
        };
        match dests.iter().find_map(|t| self.unserved(&t.dest)) {
            Some(why) => RcptVerdict::NoTransport(why.to_string()),
            None => RcptVerdict::Accept(dests),
        }
    }
}

/// Reads and parses one `db/` file, collecting its errors. An absent optional file
/// is empty.
fn db_file<T: Default>(
    path: &Path,
    required: bool,
    parse: impl FnOnce(&Path, &str) -> Result<T, Vec<ConfigError>>,
    errors: &mut Vec<ConfigError>,
) -> T {
    let absent =
        matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let text = if absent && !required {
        Ok(String::new())
    } else {
        lex::read(path)
    };
    match text.map_err(|e| vec![e]).and_then(|t| parse(path, &t)) {
        Ok(v) => v,
        Err(mut e) => {
            errors.append(&mut e);
            T::default()
        }
    }
}

/// Loads and checks every configuration file. `db/routes` must exist; `db/localnames`
/// and `db/aliases` may be absent (empty).
pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = lex::read(path).map_err(|e| vec![e])?;
    let main = MainConf::parse(path, &text)?;
    let mut errors = Vec::new();
    let db = main.mailvar.join("db");
    let entries = db_file(&db.join("routes"), true, routes::parse, &mut errors);
    let mut localnames = db_file(
        &db.join("localnames"),
        false,
        names::parse_localnames,
        &mut errors,
    );
    let aliases = names::load_aliases(&db.join("aliases")).unwrap_or_else(|mut e| {
        errors.append(&mut e);
        Default::default()
    });
    let resolve = load_resolve(&main, &mut errors);
    let generic = db_file(
        &db.join("generic"),
        false,
        generic::Generic::parse,
        &mut errors,
    );
    let recipients = db_file(
        &db.join("recipients"),
        false,
        recipients::Recipients::parse,
        &mut errors,
    );
    let sched_path = main.mailshare.join("scheduler.conf");
    let logdir = main.logdir.to_string_lossy().into_owned();
    let sched = if sched_path.exists() {
        db_file(
            &sched_path,
            true,
            |p, t| scheduler::SchedulerConf::parse(p, t, &logdir),
            &mut errors,
        )
    } else {
        scheduler::SchedulerConf::builtin(&logdir)
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let routes_path = db.join("routes");
    let errors = check_transports(&entries, &main, &sched, &routes_path, &sched_path);
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Ok(d) = Domain::parse(&main.hostname) {
        localnames.insert(d);
    }
    let router = Router {
        trie: RouteTrie::new(entries),
        localnames,
        aliases,
        protocols_smtp: main.protocols_smtp,
        accounts: crate::accounts::Accounts::snapshot(),
    };
    Ok(Config {
        main,
        router,
        resolve,
        sched,
        generic,
        recipients,
    })
}

/// Every route that can match a recipient, local delivery, and the `PROTOCOLS=smtp`
/// fall-back must reach a transport: a route to a channel no clause runs would
/// accept mail with 250 that nothing ever delivers. Each problem names the route's
/// line and, where one matches without a command, the clause's.
fn check_transports(
    entries: &[routes::RouteEntry],
    main: &MainConf,
    sched: &scheduler::SchedulerConf,
    routes_path: &Path,
    sched_path: &Path,
) -> Vec<ConfigError> {
    use routes::{Host, RouteKey, RouteValue};
    use scheduler::NoTransport;
    let mut errors = Vec::new();
    let mut report = |path: &Path, line: usize, what: &str, e: NoTransport| {
        errors.push(match e {
            NoTransport::NoClause(d) => ConfigError::at(
                path,
                line,
                format!(
                    "{what}: no clause of {} matches {d}, so nothing would deliver it",
                    sched_path.display()
                ),
            ),
            NoTransport::NoCommand {
                dest,
                selector,
                line: cl,
            } => ConfigError::at(
                sched_path,
                cl,
                format!(
                    "clause '{selector}' matches {dest} but has no command, and no later \
                     clause matching it has one (reached by {}{}: {what})",
                    path.display(),
                    if line > 0 {
                        format!(":{line}")
                    } else {
                        String::new()
                    }
                ),
            ),
        });
    };
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        if !seen.insert(format!("{:?}", e.key)) {
            continue; // a later duplicate is never used
        }
        let RouteValue::Channel { channel, host } = &e.value else {
            continue;
        };
        let host = match (host, &e.key) {
            (Host::RecipientDomain, RouteKey::Exact(d) | RouteKey::Suffix(d)) => d.to_string(),
            (Host::RecipientDomain, RouteKey::Default) => "example.com".to_string(),
            (h, _) => h.to_string(),
        };
        if let Err(err) = sched.check_destination(channel, &host) {
            let key = match &e.key {
                RouteKey::Exact(d) => d.to_string(),
                RouteKey::Suffix(d) => format!(".{d}"),
                RouteKey::Default => ".".to_string(),
            };
            report(
                routes_path,
                e.line,
                &format!("route {key} {}", e.value),
                err,
            );
        }
    }
    if let Err(err) = sched.check_destination("local", "postmaster") {
        report(&main.path, 0, "local delivery", err);
    }
    if main.protocols_smtp {
        if let Err(err) = sched.check_destination("smtp", "example.com") {
            report(&main.path, 0, "PROTOCOLS=routes smtp", err);
        }
    }
    errors
}

/// Problems the daemon would meet at start that the files themselves do not show:
/// a spool or log folder it cannot use. Each is a `path: message` line.
pub fn check_runtime(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let m = &cfg.main;
    for (name, dir) in [("POSTOFFICE", &m.postoffice), ("LOGDIR", &m.logdir)] {
        let existing = dir.ancestors().find(|a| a.exists());
        match existing {
            Some(p) if p == dir.as_path() && !p.is_dir() => {
                out.push(format!("{}: {name} is not a directory", dir.display()));
            }
            Some(p) if !crate::sys::is_root() && !crate::sys::writable(p) => out.push(format!(
                "{}: {name} cannot be {} by this user",
                p.display(),
                if p == dir.as_path() {
                    "written"
                } else {
                    "created"
                }
            )),
            _ => {}
        }
    }
    out.extend(check_secrets(m));
    if m.user.is_some() && !crate::sys::is_root() {
        out.push(format!(
            "{}: USER is set but etrnd is not started as root: it keeps running as the current user",
            m.path.display()
        ));
    }
    out
}

/// The secrets and policies (`db/secrets`, `db/authinfo`, `db/tls_policy`) and the
/// server certificate, as the daemon would read them at start.
fn check_secrets(m: &MainConf) -> Vec<String> {
    let db = m.mailvar.join("db");
    let mut owners = vec![0, crate::sys::euid()];
    if let Some((uid, _, _)) = m.user.as_deref().and_then(crate::sys::user) {
        owners.push(uid);
    }
    let mut out = Vec::new();
    let mut errs = |e: Vec<crate::lex::ConfigError>| out.extend(e.iter().map(|e| e.to_string()));
    if let Err(e) = crate::auth::secrets::Secrets::load(&db.join("secrets"), &owners) {
        errs(e);
    }
    if let Err(e) = crate::auth::authinfo::AuthInfo::load(&db.join("authinfo"), &owners) {
        errs(e);
    }
    if let Err(e) = tls_policy::TlsPolicy::load(&db.join("tls_policy"), &owners) {
        errs(e);
    }
    #[cfg(feature = "tls")]
    if let (Some(c), Some(k)) = (&m.tls_cert, &m.tls_key) {
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        match (read(c), crate::auth::secrets::read_key(k, &owners)) {
            (Ok(cert), Ok(key)) => {
                if let Err(e) = crate::tls::server_config(
                    &cert,
                    &key,
                    &c.display().to_string(),
                    &k.display().to_string(),
                ) {
                    out.push(e);
                }
            }
            (Err(e), _) | (_, Err(e)) => out.push(e),
        }
    }
    out
}

/// The resolution settings: `HOSTS_ORDER`, else the `hosts:` line of `NSSWITCH_CONF`,
/// else resolv.conf's `lookup` (OpenBSD), else `files dns`; `HOSTS_FILE`;
/// `RESOLV_CONF` with `DNS_SERVERS` in place of its servers (127.0.0.1:53 if none).
fn load_resolve(main: &MainConf, errors: &mut Vec<ConfigError>) -> ResolveConf {
    let hosts = db_file(&main.hosts_file, false, HostsTable::parse, errors);
    let mut resolv = db_file(&main.resolv_conf, false, parse_resolv, errors);
    if !main.dns_servers.is_empty() {
        resolv.servers = main.dns_servers.clone();
    }
    if resolv.servers.is_empty() {
        resolv
            .servers
            .push(std::net::SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    let order = match &main.hosts_order {
        Some(o) => o.clone(),
        None => {
            let ns = db_file(&main.nsswitch_conf, false, parse_nsswitch, errors);
            ns.or_else(|| resolv.lookup.clone())
                .unwrap_or_else(|| vec![HostSource::Files, HostSource::Dns])
        }
    };
    ResolveConf {
        order,
        hosts,
        resolv,
    }
}

fn parse_resolv(path: &Path, text: &str) -> Result<ResolvConf, Vec<ConfigError>> {
    ResolvConf::parse(path, text)
}

fn parse_nsswitch(path: &Path, text: &str) -> Result<Option<Vec<HostSource>>, Vec<ConfigError>> {
    dnsfiles::parse_nsswitch(path, text).map_err(|e| vec![e])
}
