//! `db/recipients` at the hub (DESIGN.md §4.6, §5.15): a held domain the file lists
//! takes its listed users only, refused at RCPT before anything is held; an
//! unlisted domain takes anyone as before; a reload reads the file again; `etrnd
//! route` says whether an address passes.

use crate::util::{Client, Daemon, Setup};

fn hub() -> Daemon {
    Daemon::start_with_files(
        Setup {
            routes: format!(
                "{}.other.dom smtp-etrn!mail.other.dom\n",
                crate::util::ROUTES
            ),
            ..Setup::default()
        },
        &[("db/recipients", "# the clients' users\nalice@client.dom\n")],
    )
}

#[test]
fn an_unknown_user_of_a_listed_domain_is_refused_and_nothing_is_held() {
    let d = hub();
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<s@far.example>", 250);
    let r = c.cmd("RCPT TO:<mallory@client.dom>", 550);
    assert!(r.contains("5.1.1 <mallory@client.dom>: Recipient address rejected: User unknown in relay recipient table"), "{r}");
    c.cmd("RCPT TO:<Alice@Client.Dom>", 250);
    c.cmd("RCPT TO:<anyone@other.dom>", 250);
    c.cmd("DATA", 354);
    c.send_raw(b"Subject: held\r\n\r\nx\r\n.\r\n");
    c.expect(250);
    let text = d.queued_text();
    assert!(
        text.contains("R Alice@client.dom smtp-etrn!mail.client.dom"),
        "{text}"
    );
    assert!(!text.contains("mallory"), "{text}");
    assert!(
        d.log().contains("NOQUEUE: reject: RCPT from"),
        "{}",
        d.log()
    );
}

#[test]
fn a_reload_reads_the_file_again_and_route_says_who_passes() {
    let d = hub();
    let (_, out, _) = d.run(&["route", "bob@client.dom", "alice@client.dom"]);
    assert!(
        out.contains("bob@client.dom: smtp-etrn!mail.client.dom"),
        "{out}"
    );
    assert!(
        out.contains("recipients: refused at RCPT (550 5.1.1)"),
        "{out}"
    );
    assert!(out.contains("recipients: listed in db/recipients"), "{out}");
    std::fs::write(
        d.dir.0.join("db/recipients"),
        "alice@client.dom\nbob@client.dom\n",
    )
    .unwrap();
    d.signal("HUP");
    d.wait_until("the reload", 10, || d.log().contains("reload"));
    let mut c = Client::hello(d.addr());
    c.cmd("MAIL FROM:<s@far.example>", 250);
    c.cmd("RCPT TO:<bob@client.dom>", 250);
    // A file with a bad line is refused as a whole, with its line, and the daemon
    // keeps what it had.
    std::fs::write(
        d.dir.0.join("db/recipients"),
        "alice@client.dom\nnot an address\n",
    )
    .unwrap();
    let (code, _, err) = d.run(&["-n"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("db/recipients:2: 'not an address' is not an address or @domain"),
        "{err}"
    );
}
