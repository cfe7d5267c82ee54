//! CHUNKING (RFC 3030) on a real listener: Exim's smtp transport, which sends BDAT
//! to any server that offers CHUNKING, relays through etrnd; and the bounds of
//! reference/bad-input.md §L 101 over a socket (a chunk cut by the connection's
//! end, pipelined chunks with commands in their data, DATA after BDAT).

use crate::util::{Client, Daemon, Setup};

fn bdat(data: &str, last: bool) -> String {
    let last = if last { " LAST" } else { "" };
    format!("BDAT {}{last}\r\n{data}", data.len())
}

fn relay() -> Daemon {
    Daemon::start_with(Setup {
        routes: format!("{}. smtp!mx.far.example\n", crate::util::ROUTES),
        ..Setup::default()
    })
}

#[test]
#[cfg(feature = "tls")]
fn exim_relays_a_message_in_bdat_chunks_and_it_is_queued_whole() {
    use crate::util::{is_root, TempDir};
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    if !is_root() {
        return crate::util::skip("a private Exim needs root");
    }
    let Some(bin) = crate::exim::exim_binary() else {
        return;
    };
    crate::util::system_account("Debian-exim", "/usr/sbin/nologin");
    let d = relay();
    let port = d.addr().port();
    let dir = TempDir::new("exim-cli");
    let p = dir.0.display().to_string();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["spool", "log"] {
        std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        Command::new("chown")
            .arg("Debian-exim")
            .arg(dir.0.join(sub))
            .status()
            .unwrap();
    }
    std::fs::write(
        dir.0.join("exim.conf"),
        format!(
            "primary_hostname = exim.client.test\nexim_path = {bin}\nspool_directory = {p}/spool\n\
             log_file_path = {p}/log/%slog\nexim_user = Debian-exim\n\
             exim_group = Debian-exim\nnever_users =\nkeep_environment =\n\
             host_lookup =\nrfc1413_hosts =\n\
             begin routers\nout:\n  driver = manualroute\n\
             route_list = * 127.0.0.1::{port} byname\n  transport = remote\n  self = send\n\
             begin transports\nremote:\n  driver = smtp\n  hosts_try_chunking = *\n\
             hosts_avoid_tls = *\n"
        ),
    )
    .unwrap();
    // Larger than one of Exim's chunks, with lines that look like commands and dots.
    let mut body = String::from("Subject: chunked\n\n");
    for i in 0..4000 {
        body.push_str(&format!(".line {i}\nQUIT\n"));
    }
    let out = crate::util::run_with_input(
        Command::new(&bin)
            .arg("-C")
            .arg(dir.0.join("exim.conf"))
            .args([
                "-odf",
                "-f",
                "sender@exim.client.test",
                "someone@far.example",
            ])
            .stdout(std::process::Stdio::null()),
        body.as_bytes(),
    );
    let log = std::fs::read_to_string(dir.0.join("log/mainlog")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains(" => someone@far.example"), "{log}");
    assert!(
        log.contains("] K C=\"250"),
        "Exim says K: it used BDAT: {log}"
    );
    let text = d.queued_text();
    assert!(text.contains("Subject: chunked\r\n"), "{text}");
    assert!(
        text.contains("\r\n.line 0\r\nQUIT\r\n"),
        "dots kept: {text}"
    );
    assert!(text.contains("\r\n.line 3999\r\nQUIT\r\n"), "all of it");
    assert!(d.log().contains("command \"BDAT"), "{}", d.log());
}

#[test]
fn pipelined_chunks_carry_commands_as_data_and_the_last_is_answered_once_queued() {
    let d = relay();
    let mut c = Client::hello(d.addr());
    let data = "Subject: c\r\n\r\nRSET\r\nMAIL FROM:<evil@x.example>\r\n.\r\n";
    c.send_raw(
        format!(
            "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@far.example>\r\n{}{}QUIT\r\n",
            bdat(data, false),
            bdat("tail\r\n", true)
        )
        .as_bytes(),
    );
    c.expect(250);
    c.expect(250);
    c.expect(250);
    let queued = c.expect(250);
    assert!(queued.contains("queued as"), "{queued}");
    c.expect(221);
    assert_eq!(d.queue_files().len(), 1);
    let text = d.queued_text();
    assert!(text.contains("RSET\r\nMAIL FROM:<evil@x.example>\r\n.\r\ntail\r\n"));
}

#[test]
fn a_chunk_cut_by_the_connection_end_leaves_nothing() {
    let d = relay();
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<x@far.example>", 250);
    c.send_raw(b"BDAT 1000 LAST\r\n0123456789");
    drop(c);
    d.wait_until("the session to end", 10, || {
        d.log().contains("smtp disconnect")
    });
    let mut c = Client::hello(d.addr());
    c.cmd("NOOP", 250);
    assert!(d.queue_files().is_empty(), "spool +0");
    // The folder must be there to be looked at: a wrong path would pass unseen.
    let tmp = std::fs::read_dir(d.spool().join("tmp")).expect("the spool's tmp folder");
    assert_eq!(tmp.count(), 0, "no temporary file left");
}

#[test]
fn bdat_bounds_over_a_socket() {
    let d = Daemon::start_with(Setup::with_conf("MAX_MESSAGE_SIZE=2000\n"));
    let mut c = Client::hello(d.addr());
    c.send_raw(bdat("x", true).as_bytes());
    c.expect(503);
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<alice@test.example>", 250);
    c.send_raw(format!("BDAT 3000 LAST\r\n{}", "y".repeat(3000)).as_bytes());
    c.expect(552);
    c.cmd("MAIL FROM:<a@b.example>", 250);
    c.cmd("RCPT TO:<alice@test.example>", 250);
    c.send_raw(bdat("X: 1\r\n\r\n", false).as_bytes());
    c.expect(250);
    c.cmd("DATA", 503);
    c.send_raw(bdat("body\r\n", true).as_bytes());
    c.expect(250);
    c.cmd("BDAT x", 501);
    assert!(c.closed());
}
