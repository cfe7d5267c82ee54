//! `etrnd -n` and startup with bad configuration files: `file:line: message`, exit 78.

use crate::util::{bin, run_etrnd, Setup, TempDir};
use std::process::Command;

fn check(setup: Setup) -> (i32, String) {
    let dir = TempDir::new("conf");
    setup.write(&dir.0);
    let (code, _, err) = run_etrnd(&dir.0.join("etrnd.conf"), &["-n"]);
    (code, err.replace(&*dir.0.to_string_lossy(), "DIR"))
}

#[test]
fn good_config_is_exit_0_and_silent() {
    let (code, text) = check(Setup::default());
    assert_eq!((code, text.as_str()), (0, ""));
}

#[test]
fn main_conf_errors_name_file_and_line() {
    let (code, text) = check(Setup::with_conf(
        "BOGUS=1\nMYNETWORKS=10.0.0.0/33\nMAX_RECIPIENTS=many\n",
    ));
    assert_eq!(code, 78);
    // Lines 1-12 are the harness's own settings.
    assert!(
        text.contains("DIR/etrnd.conf:13: unknown name 'BOGUS'"),
        "{text}"
    );
    assert!(
        text.contains("DIR/etrnd.conf:14: MYNETWORKS: bad prefix length"),
        "{text}"
    );
    assert!(
        text.contains("DIR/etrnd.conf:15: MAX_RECIPIENTS: expected a number"),
        "{text}"
    );
}

#[test]
fn routes_aliases_localnames_errors() {
    let setup = Setup {
        routes: "# ok\n.client.dom smtp-etrn!mail.client.dom\nbroken\n".into(),
        localnames: "good.example\nbad..example\n".into(),
        aliases: "x: |\n".into(),
        ..Setup::default()
    };
    let (code, text) = check(setup);
    assert_eq!(code, 78);
    assert!(
        text.contains("DIR/db/routes:3: expected 'key channel!host'"),
        "{text}"
    );
    assert!(text.contains("DIR/db/localnames:2: bad domain"), "{text}");
    assert!(text.contains("DIR/db/aliases:1: bad command '|'"), "{text}");
}

#[test]
fn missing_routes_file() {
    let dir = TempDir::new("noroutes");
    Setup::default().write(&dir.0);
    std::fs::remove_file(dir.0.join("db/routes")).unwrap();
    let (code, _, err) = run_etrnd(&dir.0.join("etrnd.conf"), &["-n"]);
    assert_eq!(code, 78);
    assert!(err.contains("db/routes: No such file"));
}

#[test]
fn daemon_refuses_to_start_with_bad_config() {
    let dir = TempDir::new("badstart");
    Setup::with_conf("LISTEN=nowhere\n").write(&dir.0);
    let (code, _, err) = run_etrnd(&dir.0.join("etrnd.conf"), &["-d"]);
    assert_eq!(code, 78);
    assert!(err.contains("etrnd.conf:12: LISTEN: bad address"));
}

#[test]
fn shipped_samples_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for conf in [
        "etc/etrnd.conf",
        "etc/hub/etrnd.conf",
        "etc/client/etrnd.conf",
    ] {
        let (code, _, err) = run_etrnd(&root.join(conf), &["-n"]);
        if cfg!(feature = "tls") || !conf.contains("client") {
            assert_eq!(code, 0, "{conf}: {err}");
        } else {
            // The dial-up client wants TLS to its ISP: a build without TLS says so.
            assert_eq!(code, 78, "{conf}: {err}");
            assert!(
                err.contains("needs etrnd built with the tls feature"),
                "{err}"
            );
        }
    }
}

#[test]
fn usage_error_is_64() {
    let out = Command::new(bin()).arg("-Z").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: etrnd"));
}
