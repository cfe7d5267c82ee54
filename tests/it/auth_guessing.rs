//! AUTH guessing (reference/bad-input.md K97): 60 clients from 60 addresses guess
//! one identity's password at once. Guesses are bounded per identity whatever the
//! addresses, the identity's user still gets in from where they logged in before,
//! and from anywhere else a right password gets the same 454 as a wrong one.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::{Client, Daemon, Setup};

const GUESSER: &str = r#"
import base64, hmac, socket, sys, threading
port, user, password, first, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
codes = []
def one(i):
    s = socket.create_connection(("127.0.0.1", port), timeout=60,
                                 source_address=("127.0.%d.%d" % ((first + i) // 250, 1 + (first + i) % 250), 0))
    f = s.makefile("rb")
    def line():
        while True:
            l = f.readline()
            if l[3:4] != b"-":
                return l
    line()
    s.sendall(b"EHLO guesser.example\r\n"); line()
    s.sendall(b"AUTH CRAM-MD5\r\n")
    chal = base64.b64decode(line()[4:].strip())
    d = hmac.new(password.encode(), chal, "md5").hexdigest()
    s.sendall(base64.b64encode(("%s %s" % (user, d)).encode()) + b"\r\n")
    codes.append(line()[:3].decode())
    s.close()
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(" ".join(sorted(codes)))
"#;

/// Runs `n` AUTH CRAM-MD5 attempts at once, from `n` addresses starting at
/// `first`: the final reply codes.
fn guess(d: &Daemon, user: &str, password: &str, first: u32, n: u32) -> Vec<String> {
    let out = crate::util::run_ok(Command::new("python3").args([
        "-c",
        GUESSER,
        &d.addrs[1].port().to_string(),
        user,
        password,
        &first.to_string(),
        &n.to_string(),
    ]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn guesses_from_rotating_addresses_are_bounded_per_identity() {
    let mut d = Daemon::prepare(
        Setup::with_conf("LISTEN=\"127.0.0.1:0 127.0.0.1:0/odmr\"\nMYNETWORKS=10.255.0.0/16\n"),
        &[],
    );
    let secrets = d.dir.0.join("db/secrets");
    std::fs::write(&secrets, "cust {PLAIN}s3cret client.dom\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.spawn();
    // The identity's user logs in from its usual address.
    assert_eq!(guess(&d, "cust", "s3cret", 1000, 1), vec!["235"]);
    // 60 wrong guesses at once from 60 other addresses: at most the budget is
    // checked, the rest get 454 unchecked.
    let codes = guess(&d, "cust", "wrong", 10, 60);
    assert_eq!(codes.len(), 60, "{codes:?}");
    let checked = codes.iter().filter(|c| *c == "535").count();
    let locked = codes.iter().filter(|c| *c == "454").count();
    assert_eq!(
        (checked, locked),
        (etrnd::auth::throttle::IDENTITY_BUDGET as usize, 50),
        "{codes:?}"
    );
    // Fresh user names do not free the identity (a flood of them is the unit
    // tests' in auth::throttle: the table keeps known identities first).
    for i in 0..3 {
        let mut c = Client::connect(d.addrs[1]);
        c.expect(220);
        c.cmd("EHLO flood.example", 250);
        crate::util::cram(&mut c, &format!("fresh{i}"), "x", 535);
    }
    // From a new address even the right password gets the same 454: no oracle.
    assert_eq!(guess(&d, "cust", "s3cret", 500, 1), vec!["454"]);
    // From where it logged in before, the user gets in at once.
    assert_eq!(guess(&d, "cust", "s3cret", 1000, 1), vec!["235"]);
    assert!(d.log().contains("auth-locked"), "{}", d.log());
}

#[test]
fn cram_md5_in_clear_only_on_the_odmr_listener_by_default() {
    let mut d = Daemon::prepare(
        Setup::with_conf("LISTEN=\"127.0.0.1:0 127.0.0.1:0/odmr\"\n"),
        &[],
    );
    let secrets = d.dir.0.join("db/secrets");
    std::fs::write(&secrets, "cust {PLAIN}s3cret client.dom\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.spawn();
    let mut c = Client::connect(d.addrs[0]);
    c.expect(220);
    let ehlo = c.cmd("EHLO client.example", 250);
    assert!(!ehlo.contains("CRAM-MD5"), "{ehlo}");
    let r = c.cmd("AUTH CRAM-MD5", 538);
    assert!(r.contains("5.7.11"), "{r}");
    let mut c = Client::connect(d.addrs[1]);
    c.expect(220);
    let ehlo = c.cmd("EHLO client.example", 250);
    assert!(ehlo.contains("CRAM-MD5"), "{ehlo}");
    crate::util::cram(&mut c, "cust", "s3cret", 235);
}
