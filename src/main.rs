//! The `etrnd` executable: command line, logging, configuration, then the daemon or a
//! one-shot command. Exit codes follow sysexits(3).

use std::path::{Path, PathBuf};
use std::process::exit;

use etrnd::cli::{self, exit as ex, Command, Options};
use etrnd::config::{self, Config};
use etrnd::dns::{Dns, Outcome};
use etrnd::route::Decision;
use etrnd::spool::Spool;

/// The account a daemon started as root with `USER` empty becomes.
const FALLBACK_USER: &str = "nobody";

fn load_config(path: &Path) -> Config {
    match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            exit(ex::CONFIG);
        }
    }
}

fn die(code: i32, msg: impl std::fmt::Display) -> ! {
    log::error!("{msg}");
    eprintln!("etrnd: {msg}");
    etrnd::sys::daemon_failed(code, &msg.to_string());
    exit(code);
}

fn route(cfg: &Config, addrs: &[String], resolve: bool) -> i32 {
    let mut code = ex::OK;
    let mut dns = resolve.then(|| {
        let seed = etrnd::sys::random_u64();
        Dns::new(
            cfg.resolve.clone(),
            etrnd::dns::self_spec(cfg, &[]),
            cfg.main.smtp_port,
            seed,
        )
    });
    for a in addrs {
        let path = if a.starts_with('<') {
            a.clone()
        } else {
            format!("<{a}>")
        };
        let mbox = match etrnd::smtp::parse_path(&path) {
            Ok(Some(m)) => m,
            Ok(None) => {
                println!("{a}: error: the null address cannot be a recipient");
                code = ex::DATAERR;
                continue;
            }
            Err(e) => {
                println!("{a}: error: {e}");
                code = ex::DATAERR;
                continue;
            }
        };
        let inside = cfg.router.route(&mbox, true);
        let outside = cfg.router.route(&mbox, false);
        let show = |d: &Decision| match d {
            Decision::Local(u) => format!("local user {u}"),
            Decision::Remote { channel, host } => format!("{channel}!{host}"),
            Decision::Refuse(r) => format!("refused: {r}"),
        };
        println!("{mbox}: {}", show(&inside.decision));
        println!("    because: {}", inside.why);
        let (channel, host) = match &inside.decision {
            Decision::Remote { channel, host } => (channel.as_str(), host.as_str()),
            Decision::Local(u) => ("local", u.as_str()),
            Decision::Refuse(_) => ("", ""),
        };
        if !channel.is_empty() {
            match cfg.sched.clause_for(channel, host) {
                Some((_, c)) => println!(
                    "    scheduler: {} (scheduler.conf line {}){}{}",
                    c.selector,
                    c.line,
                    match (&c.command_from, &c.params.command) {
                        (_, None) => ", no command: not delivered".to_string(),
                        (Some((sel, line)), _) => format!(", command from {sel} (line {line})"),
                        (None, _) => String::new(),
                    },
                    if c.params.queueonly {
                        ", queue-only"
                    } else {
                        ""
                    }
                ),
                None => {
                    println!("    scheduler: no clause matches {channel}/{host}: not delivered")
                }
            }
        }
        if outside.decision != inside.decision {
            println!("    from outside MYNETWORKS: {}", show(&outside.decision));
        }
        if let (Some(dns), Decision::Remote { host, .. }) = (dns.as_mut(), &inside.decision) {
            print_next_hops(dns, host);
        }
    }
    code
}

/// Resolves a route host as a delivery would and prints what it would try.
fn print_next_hops(dns: &mut Dns, host: &str) {
    let limit = std::time::Duration::from_secs(60);
    match etrnd::event_loop::dns_io::resolve_all(dns, &[(host.to_string(), false)], limit) {
        Ok(mut outcomes) => match outcomes.pop() {
            Some(Outcome::Hops(hops)) => {
                for (i, h) in hops.iter().enumerate() {
                    let pref = h.pref.map(|p| format!(" MX {p}")).unwrap_or_default();
                    println!(
                        "    next hop {}: {}{} {} (from {})",
                        i + 1,
                        h.host,
                        pref,
                        h.addr,
                        h.source
                    );
                }
            }
            Some(Outcome::Failed { status, reason }) => {
                println!("    next hop: permanent failure {status}: {reason}")
            }
            Some(Outcome::Deferred { status, reason }) => {
                println!("    next hop: temporary failure {status}: {reason}")
            }
            None => {}
        },
        Err(e) => println!("    next hop: cannot resolve: {e}"),
    }
}

/// `etrnd etrn`: resolves the server like a delivery would (hosts file first, then
/// A/AAAA; an address literal or IP as is) and sends the ETRNs.
fn etrn(cfg: &Config, port: Option<u16>, server: &str, targets: &[String]) -> i32 {
    let port = port.unwrap_or(cfg.main.smtp_port);
    let addrs: Vec<std::net::SocketAddr> = match server.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => {
            let seed = etrnd::sys::random_u64();
            let mut dns = Dns::new(
                cfg.resolve.clone(),
                etrnd::dns::self_spec(cfg, &[]),
                port,
                seed,
            );
            let host = if server.starts_with('[') {
                server.to_string()
            } else {
                server.to_ascii_lowercase()
            };
            let limit = std::time::Duration::from_secs(60);
            match etrnd::event_loop::dns_io::resolve_all(&mut dns, &[(host, true)], limit) {
                Ok(mut o) => match o.pop() {
                    Some(Outcome::Hops(h)) => h
                        .into_iter()
                        .map(|h| std::net::SocketAddr::new(h.addr.ip(), port))
                        .collect(),
                    Some(Outcome::Failed { reason, .. })
                    | Some(Outcome::Deferred { reason, .. }) => {
                        eprintln!("etrn: {server}: {reason}");
                        return ex::UNAVAILABLE;
                    }
                    None => Vec::new(),
                },
                Err(e) => {
                    eprintln!("etrn: {server}: {e}");
                    return ex::UNAVAILABLE;
                }
            }
        }
    };
    etrnd::etrn_client::run(&addrs, &cfg.main.hostname, targets, &mut std::io::stdout())
}

fn daemon(opts: &Options, cfg: Config, config_path: PathBuf) -> ! {
    let level = etrnd::logging::level_for(opts.verbosity);
    if opts.foreground {
        etrnd::logging::init_stderr(level);
    }
    let pidfile = cfg.main.pidfile.clone();
    let pid_lock = match etrnd::sys::lock_pidfile(&cfg.main.pidfile) {
        Ok(f) => f,
        Err(e) => die(
            ex::UNAVAILABLE,
            format!("pid file {}: {e}", cfg.main.pidfile.display()),
        ),
    };
    let listeners = match etrnd::event_loop::bind(&cfg) {
        Ok(l) => l,
        Err(e) => die(ex::OSERR, e),
    };
    if !opts.foreground {
        let syslog = match etrnd::logging::syslog_target(cfg.main.syslog_socket.as_deref()) {
            Ok(t) => Some(t),
            Err(tried) => {
                eprintln!(
                    "etrnd: warning: no syslog socket works ({tried}); the daemon's log \
                     lines will be lost: start syslogd, set SYSLOG_SOCKET, or run with -d"
                );
                None
            }
        };
        if let Err(e) = etrnd::sys::daemonize() {
            die(ex::OSERR, format!("cannot detach: {e}"));
        }
        etrnd::logging::init_syslog(level, syslog);
        // The lock is inherited; the pid changed.
        if let Err(e) = etrnd::sys::lock_pidfile_rewrite(&pid_lock) {
            log::error!("pid file {}: {e}", cfg.main.pidfile.display());
        }
    }
    // Transcripts hold addresses and replies: a folder only root and USER enter.
    let made = std::fs::create_dir_all(&cfg.main.logdir).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.main.logdir, std::fs::Permissions::from_mode(0o750))
    });
    if let Err(e) = made {
        log::warn!("LOGDIR {}: {e}", cfg.main.logdir.display());
    }
    let fds = etrnd::sys::raise_fd_limit();
    log::debug!("daemon fd-limit={fds}");
    let spool = match Spool::open(&cfg.main.postoffice) {
        Ok(s) => s,
        Err(e) => die(ex::CANTCREAT, e),
    };
    // The network-facing daemon never runs as root: USER, or else `nobody` (as
    // OpenSMTPD insists on _smtpd and Postfix on mail_owner; a dedicated account is
    // better, see etrnd.conf(5)), or else it refuses to start.
    let user = match (&cfg.main.user, etrnd::sys::is_root()) {
        (_, false) => None,
        (Some(u), true) => Some(u.clone()),
        (None, true) if etrnd::sys::user_exists(FALLBACK_USER) => {
            log::warn!(
                "daemon USER is empty: running as {FALLBACK_USER}; set USER to an account of etrnd's own"
            );
            Some(FALLBACK_USER.to_string())
        }
        (None, true) => die(
            ex::CONFIG,
            format!(
                "{}: started as root with USER empty and no '{FALLBACK_USER}' account: the \
                 network-facing daemon never runs as root; set USER to an unprivileged \
                 account of its own (useradd -r -d /nonexistent -s /usr/sbin/nologin etrnd, \
                 then USER=etrnd)",
                cfg.main.path.display()
            ),
        ),
    };
    let cfg_copy = user.as_ref().map(|_| cfg.main.clone());
    let mut d = match etrnd::event_loop::Daemon::new(cfg, config_path, listeners, spool) {
        Ok(d) => d,
        Err(e) => die(ex::OSERR, e),
    };
    // Listeners are bound and the spool is ready (and its files, including those of
    // the first pickup, are given to USER): nothing has read the network yet.
    if let (Some(u), Some(main)) = (&user, &cfg_copy) {
        give_spool(main, u);
        // The helper keeps root for what needs it (delivering as the recipient);
        // everything else gives it up now, before the first read from the network.
        let conf = etrnd::helper::HelperConf {
            postoffice: main.postoffice.clone(),
            mailbox: main.mailbox.clone(),
            maildir: main.maildir,
            hostname: main.hostname.clone(),
            max_message_size: main.max_message_size,
        };
        match etrnd::helper::Helper::spawn(conf) {
            Ok(h) => d.set_helper(h),
            Err(e) => die(ex::OSERR, format!("cannot start the delivery helper: {e}")),
        }
        if let Err(e) = etrnd::sys::drop_privileges(u) {
            die(ex::OSERR, format!("cannot become user {u}: {e}"));
        }
        log::info!("daemon privileges-dropped user={u}");
    }
    etrnd::sys::daemon_ready();
    log::info!("daemon started version={}", env!("CARGO_PKG_VERSION"));
    let rc = match d.run() {
        Ok(()) => ex::OK,
        Err(e) => {
            log::error!("daemon failed error=\"{e}\"");
            ex::OSERR
        }
    };
    etrnd::sys::release_pidfile(&pidfile, &pid_lock);
    drop(pid_lock);
    exit(rc);
}

/// Gives the spool (and LOGDIR) to `USER` before privileges are dropped.
fn give_spool(main: &etrnd::config::MainConf, user: &str) {
    let Some((uid, gid, _)) = etrnd::sys::user(user) else {
        return;
    };
    let root = &main.postoffice;
    let mut paths = vec![root.clone(), main.logdir.clone()];
    for sub in [
        "tmp",
        "queue",
        "state",
        "corrupt",
        "drop",
        "listening",
        "notify",
        "control",
    ] {
        paths.push(root.join(sub));
    }
    // Only the daemon's own files: corrupt/ may hold what a local user left in the
    // drop folder, and nothing a user made is ever chowned.
    for sub in ["queue", "state"] {
        if let Ok(rd) = std::fs::read_dir(root.join(sub)) {
            paths.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    for p in paths {
        if p.exists() {
            if let Err(e) = etrnd::sys::chown_path(&p, uid, gid) {
                log::warn!("spool chown-failed path={} error=\"{e}\"", p.display());
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err((msg, code)) => {
            if code == ex::OK {
                println!("{msg}");
            } else {
                eprintln!("{msg}");
            }
            exit(code);
        }
    };
    // Paths in the configuration are relative to its directory; make that absolute
    // so that detaching (chdir /) changes nothing.
    let config_path = std::path::absolute(&opts.config).unwrap_or(opts.config.clone());
    let cfg = load_config(&config_path);
    match &opts.command {
        Command::Check => {
            let problems = config::check_runtime(&cfg);
            for p in &problems {
                eprintln!("{p}");
            }
            exit(if problems.is_empty() {
                ex::OK
            } else {
                ex::CONFIG
            })
        }
        Command::Route { resolve, addrs } => exit(route(&cfg, addrs, *resolve)),
        Command::Mailq => match etrnd::mailq::render(&cfg) {
            Ok(text) => {
                print!("{text}");
                exit(ex::OK)
            }
            Err(e) => {
                eprintln!("etrnd: {e}");
                exit(ex::OSERR)
            }
        },
        Command::Qshape => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            match etrnd::mailq::qshape(&cfg, now) {
                Ok(text) => {
                    print!("{text}");
                    exit(ex::OK)
                }
                Err(e) => {
                    eprintln!("etrnd: {e}");
                    exit(ex::OSERR)
                }
            }
        }
        Command::Sendmail(args) => match etrnd::submit::parse_args(args) {
            Ok(a) => exit(etrnd::submit::run(
                &cfg,
                &a,
                &mut std::io::stdin().lock(),
                &mut std::io::stderr(),
            )),
            Err(e) => {
                eprintln!("sendmail: {e}");
                exit(ex::USAGE)
            }
        },
        Command::Flush(t) => exit(etrnd::etrn_client::flush(
            &cfg,
            t.as_deref(),
            &mut std::io::stdout(),
        )),
        Command::Etrn {
            port,
            server,
            targets,
        } => exit(etrn(&cfg, *port, server, targets)),
        Command::Daemon => daemon(&opts, cfg, config_path),
    }
}
