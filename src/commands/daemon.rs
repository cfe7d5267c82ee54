//! The daemon's start-up: the order matters (bind and lock before detaching so
//! errors reach the terminal; the spool given to `USER` and the helper started before
//! privileges are dropped; nothing read from the network before that).

use std::path::PathBuf;
use std::process::exit;

use crate::cli::{exit as ex, Options};
use crate::config::Config;
use crate::store::spool::Spool;

/// The account a daemon started as root with `USER` empty becomes.
const FALLBACK_USER: &str = "nobody";
/// How long the daemon waits at start-up for a helper the supervisor starts.
const HELPER_START: std::time::Duration = std::time::Duration::from_secs(30);

/// What the auth helper reads: fixed here, before privileges are dropped.
pub fn guard_conf(
    main: &crate::config::MainConf,
    user: Option<&str>,
) -> crate::auth::guard::GuardConf {
    let db = main.mailvar.join("db");
    let mut owners = vec![0, crate::sys::euid()];
    if let Some((uid, _, _)) = user.and_then(crate::sys::user) {
        owners.push(uid);
    }
    let token_user = user
        .and_then(crate::sys::user)
        .map(|(uid, gid, _)| (uid, gid));
    crate::auth::guard::GuardConf {
        secrets: db.join("secrets"),
        cert: main.tls_cert.clone(),
        key: main.tls_key.clone(),
        authinfo: db.join("authinfo"),
        tls_policy: db.join("tls_policy"),
        owners,
        token_user,
    }
}

/// Reports a start-up failure (to the log, the terminal and a waiting parent) and
/// exits.
pub fn die(code: i32, msg: impl std::fmt::Display) -> ! {
    log::error!("{msg}");
    eprintln!("etrnd: {msg}");
    crate::sys::daemon_failed(code, &msg.to_string());
    exit(code);
}

/// Runs the daemon: binds, detaches, opens the spool, hands it to `USER`, starts
/// the privileged helper, drops privileges, and runs the loop until it stops.
pub fn run(opts: &Options, cfg: Config, config_path: PathBuf) -> ! {
    let level = crate::logging::level_for(opts.verbosity);
    if opts.foreground {
        crate::logging::init_stderr(level);
    }
    let pidfile = cfg.main.pidfile.clone();
    let pid_lock = match crate::sys::lock_pidfile(&cfg.main.pidfile) {
        Ok(f) => f,
        Err(e) => die(
            ex::UNAVAILABLE,
            format!("pid file {}: {e}", cfg.main.pidfile.display()),
        ),
    };
    let listeners = match crate::daemon::bind(&cfg) {
        Ok(l) => l,
        Err(e) => die(ex::OSERR, e),
    };
    if !opts.foreground {
        let syslog = match crate::logging::syslog_target(cfg.main.syslog_socket.as_deref()) {
            Ok(t) => Some(t),
            Err(tried) => {
                eprintln!(
                    "etrnd: warning: no syslog socket works ({tried}); the daemon's log \
                     lines will be lost: start syslogd, set SYSLOG_SOCKET, or run with -d"
                );
                None
            }
        };
        if let Err(e) = crate::sys::daemonize() {
            die(ex::OSERR, format!("cannot detach: {e}"));
        }
        crate::logging::init_syslog(level, syslog);
        // The lock is inherited; the pid changed.
        if let Err(e) = crate::sys::lock_pidfile_rewrite(&pid_lock) {
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
    let fds = crate::sys::raise_fd_limit();
    log::debug!("daemon fd-limit={fds}");
    // The network-facing daemon never runs as root: USER, or else `nobody` (as
    // OpenSMTPD insists on _smtpd and Postfix on mail_owner; a dedicated account is
    // better, see etrnd.conf(5)), or else it refuses to start.
    let user = match (&cfg.main.user, crate::sys::is_root()) {
        (_, false) => None,
        (Some(u), true) => Some(u.clone()),
        (None, true) if crate::sys::user_exists(FALLBACK_USER) => {
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
    // The supervisor starts (and starts again) the helpers: the delivery helper keeps
    // root for what needs it (delivering as the recipient), the auth helper the
    // rights to read the secrets. Forked before the spool is read, so it holds
    // nothing of it.
    let helper_conf = user.as_ref().map(|_| crate::local::helper::HelperConf {
        postoffice: cfg.main.postoffice.clone(),
        mailbox: cfg.main.mailbox.clone(),
        maildir: cfg.main.maildir,
        hostname: cfg.main.hostname.clone(),
        max_message_size: cfg.main.max_message_size,
        aliases: cfg.main.mailvar.join("db").join("aliases"),
    });
    let confs = crate::local::supervisor::Confs {
        helper: helper_conf,
        guard: guard_conf(&cfg.main, user.as_deref()),
    };
    let mut sup = match crate::local::supervisor::Supervisor::spawn(confs) {
        Ok(s) => s,
        Err(e) => die(ex::OSERR, format!("cannot start the supervisor: {e}")),
    };
    let spool_root = cfg.main.postoffice.clone();
    let spool = match Spool::open(&cfg.main.postoffice) {
        Ok(s) => s,
        Err(e) => die(ex::CANTCREAT, e),
    };
    let cfg_copy = user.as_ref().map(|_| cfg.main.clone());
    let mut d = match crate::daemon::Daemon::new(cfg, config_path, listeners, spool) {
        Ok(d) => d,
        Err(e) => die(ex::OSERR, e),
    };
    // The auth helper reads the secrets, certificate and key now and on every
    // SIGHUP, with the rights the daemon had at start.
    let started = sup
        .start(crate::local::supervisor::Kind::Auth, HELPER_START)
        .and_then(|(pid, sock)| crate::auth::guard::Guard::attach(sock, pid));
    match started {
        Ok((g, Ok(loaded))) => {
            if let Err(e) = d.set_guard(g, loaded) {
                die(ex::CONFIG, e);
            }
        }
        Ok((_, Err(e))) => die(ex::CONFIG, e),
        Err(e) => die(ex::OSERR, format!("cannot start the auth helper: {e}")),
    }
    // Listeners are bound and the spool is ready (and its files, including those of
    // the first pickup, are given to USER): nothing has read the network yet.
    if let (Some(u), Some(main)) = (&user, &cfg_copy) {
        give_spool(main, u);
        let started = sup
            .start(crate::local::supervisor::Kind::Delivery, HELPER_START)
            .and_then(|(pid, sock)| crate::local::helper::Helper::new(sock, pid))
            .and_then(|h| d.set_helper(h));
        if let Err(e) = started {
            die(ex::OSERR, format!("cannot start the delivery helper: {e}"));
        }
        if let Err(e) = crate::sys::drop_privileges(u) {
            die(ex::OSERR, format!("cannot become user {u}: {e}"));
        }
        log::info!("daemon privileges-dropped user={u}");
    }
    if let Err(e) = d.set_supervisor(sup) {
        die(ex::OSERR, format!("cannot watch the supervisor: {e}"));
    }
    // Before serving: the spool can be written by who we are now (a daemon that
    // greets and then answers 451 to every message helps nobody).
    if let Err(e) = crate::store::spool::Spool::at(&spool_root).check_writable() {
        let me =
            crate::sys::current_user().unwrap_or_else(|| format!("uid {}", crate::sys::euid()));
        die(
            ex::CANTCREAT,
            format!("the spool cannot be written by {me}: {e}; give POSTOFFICE and the folders above it to {me}, or set USER"),
        );
    }
    crate::sys::daemon_ready();
    log::info!("daemon started version={}", env!("CARGO_PKG_VERSION"));
    let rc = match d.run() {
        Ok(()) => ex::OK,
        Err(e) => {
            log::error!("daemon failed error=\"{e}\"");
            ex::OSERR
        }
    };
    crate::sys::release_pidfile(&pidfile, &pid_lock);
    drop(pid_lock);
    exit(rc);
}

/// Gives the spool (and LOGDIR) to `USER` before privileges are dropped.
pub fn give_spool(main: &crate::config::MainConf, user: &str) {
    let Some((uid, gid, _)) = crate::sys::user(user) else {
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
    // hold/ may hold a million files: walked only when the folder is not the
    // daemon's yet (its files are queue files moved by rename, already the
    // daemon's). index/ (a file per destination, some written by the start-up
    // before this) always is.
    for sub in ["hold", "index"] {
        use std::os::unix::fs::MetadataExt;
        let dir = root.join(sub);
        let foreign =
            std::fs::symlink_metadata(&dir).is_ok_and(|m| m.uid() != uid || m.gid() != gid);
        if sub == "index" || foreign {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                paths.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
        paths.push(dir);
    }
    for p in paths {
        if p.exists() {
            if let Err(e) = crate::sys::chown_path(&p, uid, gid) {
                log::warn!("spool chown-failed path={} error=\"{e}\"", p.display());
            }
        }
    }
}
