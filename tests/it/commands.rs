//! `etrnd mailq` and `etrnd route` against a real spool and configuration.

use crate::util::{Client, Daemon};

#[test]
fn mailq_lists_acknowledged_messages() {
    let d = Daemon::start();
    let (code, out, _) = d.run(&["mailq"]);
    assert_eq!((code, out.as_str()), (0, "Mail queue is empty\n"));
    let mut c = Client::hello(d.addr());
    let id1 = c.send_message(
        "a@b.example",
        &["u@client.dom", "alice@test.example"],
        "Subject: 1\r\n\r\nx\r\n",
    );
    let id2 = c.send_message("", &["v@mail.client.dom"], "Subject: 2\r\n\r\ny\r\n");
    c.cmd("QUIT", 221);
    let (code, out, _) = d.run(&["mailq"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id1) && out.contains(&id2), "{out}");
    assert!(out.contains("<a@b.example>"), "{out}");
    assert!(out.contains("<>"), "{out}");
    assert!(
        out.contains("u@client.dom  smtp-etrn!mail.client.dom  held"),
        "{out}"
    );
    assert!(
        out.contains("alice@test.example  local!root  held"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("Kbytes in 2 Requests."), "{out}");
}

#[test]
fn route_explains_decisions() {
    let d = Daemon::start();
    let (code, out, _) = d.run(&[
        "route",
        "user@sub.client.dom",
        "alice@test.example",
        "x@y.closed.dom",
        "who@far.example",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("user@sub.client.dom: smtp-etrn!mail.client.dom"),
        "{out}"
    );
    assert!(
        out.contains("alice@test.example: local user alice"),
        "{out}"
    );
    assert!(out.contains("x@y.closed.dom: refused: 550 5.1.2"), "{out}");
    assert!(out.contains("(database)"), "{out}");
    assert!(out.contains("who@far.example: refused: 550 5.1.2"), "{out}");
    let (code, out, _) = d.run(&["route", "not an address"]);
    assert_eq!(code, 65, "{out}");
}

#[test]
fn sighup_reloads_and_keeps_old_config_on_error() {
    let d = Daemon::start();
    let routes = d.dir.0.join("db/routes");
    // Add a route, reload: the new domain is accepted.
    std::fs::write(&routes, ".new.dom smtp!mx.new.dom\n").unwrap();
    d.signal("HUP");
    wait_for(&d, "config reloaded");
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<u@new.dom>", 250);
    // A broken file: logged, the old routes stay.
    std::fs::write(&routes, "broken line here\n").unwrap();
    d.signal("HUP");
    wait_for(&d, "the old configuration stays in force");
    assert!(d.log().contains("db/routes:1:"), "{}", d.log());
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<u@new.dom>", 250);
}

#[test]
fn sigterm_exits_zero_and_says_421() {
    let mut d = Daemon::start();
    let mut c = Client::hello(d.addr());
    let st = d.stop();
    assert_eq!(st.code(), Some(0));
    let (code, _) = c.reply().expect("a 421 before closing");
    assert_eq!(code, 421);
}

#[test]
fn second_daemon_on_same_pidfile_refuses() {
    let d = Daemon::start();
    let out = std::process::Command::new(crate::util::bin())
        .args(["-d", "-f"])
        .arg(d.conf_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
}

fn wait_for(d: &Daemon, text: &str) {
    let deadline = std::time::Instant::now() + crate::util::IO_TIMEOUT;
    while !d.log().contains(text) {
        assert!(
            std::time::Instant::now() < deadline,
            "no '{text}' in log:\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn listens_on_several_addresses_ipv4_and_ipv6() {
    let have_v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    let listen = if have_v6 {
        "LISTEN=127.0.0.1:0 127.0.0.2:0 [::1]:0\n"
    } else {
        "LISTEN=127.0.0.1:0 127.0.0.2:0\n"
    };
    let d = Daemon::start_with(crate::util::Setup::with_conf(listen));
    assert_eq!(d.addrs.len(), if have_v6 { 3 } else { 2 }, "{}", d.log());
    for a in &d.addrs {
        assert_ne!(a.port(), 0, "the real port is logged");
        let mut c = Client::hello(*a);
        c.send_message(
            "a@b.example",
            &["alice@test.example"],
            "Subject: x\r\n\r\nx\r\n",
        );
    }
    assert_eq!(d.queue_files().len(), d.addrs.len());
}

#[test]
fn config_shows_every_name_with_its_source_and_v_and_h_answer() {
    let d = Daemon::start_with(crate::util::Setup::with_conf(
        "MAX_RECIPIENTS=500\nHOLD_QUOTA=${MAX_RECIPIENTS}000\n",
    ));
    let (code, out, err) = d.run(&["config"]);
    assert_eq!(code, 0, "{err}");
    let conf = d.conf_path();
    let text = std::fs::read_to_string(&conf).unwrap();
    let line_of = |name: &str| {
        text.lines()
            .position(|l| l.starts_with(&format!("{name}=")))
            .unwrap()
            + 1
    };
    assert!(
        out.contains(&format!(
            "MAX_RECIPIENTS=500\t# {}:{}",
            conf.display(),
            line_of("MAX_RECIPIENTS")
        )),
        "{out}"
    );
    assert!(out.contains("HOLD_QUOTA=500000\t# "), "expanded: {out}");
    assert!(out.contains("MAX_CONNECTIONS=100\t# default"), "{out}");
    assert!(
        out.contains("LINK_PACE=\"conns=2 msgs=10\"\t# default"),
        "{out}"
    );
    // Every name of etrnd.conf(5) appears once.
    for name in [
        "POSTOFFICE",
        "LISTEN",
        "SMTP_BIND",
        "SMTP_TLS",
        "LINKS",
        "LINK_DIAL_WHEN",
    ] {
        assert_eq!(
            out.matches(&format!("\n{name}=")).count(),
            1,
            "{name}: {out}"
        );
    }
    let (code, out, _) = d.run(&["-V"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("etrnd {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let (code, out, _) = d.run(&["-h"]);
    assert_eq!(code, 0);
    for cmd in [
        "config",
        "mailq [-j]",
        "qshape",
        "clients",
        "queue delete",
        "flush",
        "link up",
        "etrn [-p port]",
        "atrn [-p port]",
        "route [-R]",
        "sendmail",
    ] {
        assert!(out.contains(&format!("  {cmd}")), "{cmd} in:\n{out}");
    }
}

#[test]
fn what_a_new_user_reaches_for_works() {
    use std::os::unix::fs::PermissionsExt;
    // etrnd secret: a db/secrets value for a password on standard input, which the
    // daemon then takes for CRAM-MD5 and for PLAIN.
    let out = crate::util::run_with_input(
        std::process::Command::new(crate::util::bin())
            .arg("secret")
            .stdout(std::process::Stdio::piped()),
        b"s3cret pass\n",
    );
    assert!(out.status.success(), "{out:?}");
    let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(value.starts_with("{CRAM-MD5}"), "{value}");
    // (CRAM-MD5 without TLS on this loopback listener, for the test.)
    let mut d = Daemon::prepare(
        crate::util::Setup::with_conf("AUTH_CLEAR_CRAM=\"smtp odmr\"\n"),
        &[],
    );
    let secrets = d.dir.0.join("db/secrets");
    std::fs::write(&secrets, format!("cust {value} client.dom\n")).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.spawn();
    // A brand-new spool says so, and warns of nothing.
    let log = d.log();
    assert!(log.contains("index=new"), "{log}");
    assert!(!log.contains("index-rebuild"), "{log}");
    let mut c = Client::hello(d.addr());
    crate::util::cram(&mut c, "cust", "s3cret pass", 235);
    // etrnd config with no file at the default path shows the defaults.
    let default = etrnd::config::main_conf::default_path();
    if default.exists() {
        crate::util::skip("etrnd config without -f: a configuration is installed here");
        return;
    }
    let out = std::process::Command::new(crate::util::bin())
        .arg("config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("POSTOFFICE") && text.contains("/var/spool/etrnd"),
        "{text}"
    );
}
