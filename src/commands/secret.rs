//! `etrnd secret [-s SCHEME]`: reads a password on stdin (without echo on a
//! terminal) and prints the `db/secrets` value for it — the two HMAC-MD5 contexts
//! (`{CRAM-MD5}`, which serves CRAM-MD5, PLAIN and LOGIN without the password being
//! stored), or a crypt(3) hash of SCHEME with a fresh random salt, made only if this
//! platform also verifies it.

use std::io::{BufRead, Write};

use crate::cli::exit as ex;

/// The schemes and the crypt(3) setting prefix of each.
const SCHEMES: &[(&str, &str)] = &[
    ("cram-md5", ""),
    ("yescrypt", "$y$j9T$"),
    ("bcrypt", "$2b$12$"),
    ("sha512", "$6$"),
    ("sha256", "$5$"),
];

/// The alphabet of crypt(3) salts.
const SALT: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Runs `etrnd secret ARGS`; the value goes to `out`, messages to stderr.
pub fn run(args: &[String], input: &mut impl BufRead, out: &mut impl Write) -> i32 {
    let scheme = match args {
        [] => "cram-md5".to_string(),
        [s, v] if s == "-s" => v.to_ascii_lowercase(),
        [s] if s.starts_with("-s") && s.len() > 2 => s[2..].to_ascii_lowercase(),
        _ => {
            eprintln!("usage: etrnd secret [-s cram-md5|yescrypt|bcrypt|sha512|sha256]");
            return ex::USAGE;
        }
    };
    let Some(&(_, prefix)) = SCHEMES.iter().find(|(n, _)| *n == scheme) else {
        eprintln!("secret: unknown scheme '{scheme}' (cram-md5, yescrypt, bcrypt, sha512, sha256)");
        return ex::USAGE;
    };
    let password = match read_password(input) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => {
            eprintln!("secret: an empty password");
            return ex::DATAERR;
        }
        Err(e) => {
            eprintln!("secret: {e}");
            return ex::OSERR;
        }
    };
    let value = if prefix.is_empty() {
        let c = crate::auth::md5::hmac_contexts(password.as_bytes());
        format!("{{CRAM-MD5}}{}", crate::auth::md5::contexts_hex(&c))
    } else {
        match hash(&password, prefix) {
            Some(h) => h,
            None => {
                eprintln!("secret: this platform's crypt(3) does not make or verify {scheme} hashes; choose another scheme");
                return ex::UNAVAILABLE;
            }
        }
    };
    match writeln!(out, "{value}") {
        Ok(()) => ex::OK,
        Err(_) => ex::OSERR,
    }
}

/// A hash of `password` under `prefix` with a random salt, if crypt(3) makes one
/// that it also verifies.
fn hash(password: &str, prefix: &str) -> Option<String> {
    let mut raw = [0u8; 24];
    crate::sys::fill_random(&mut raw);
    let salt: String = raw
        .iter()
        .map(|b| SALT[usize::from(*b) % SALT.len()] as char)
        .collect();
    // SHA-crypt takes 16; bcrypt 22; yescrypt whole groups of 4 (24).
    let salt = match prefix {
        "$6$" | "$5$" => &salt[..16],
        "$2b$12$" => &salt[..22],
        _ => &salt[..],
    };
    let setting = format!("{prefix}{salt}");
    let h = crate::auth::crypt(password.as_bytes(), &setting)?;
    let verifies = h.starts_with(prefix)
        && crate::auth::crypt(password.as_bytes(), &h).is_some_and(|again| again == h);
    verifies.then_some(h)
}

/// One line of `input`: on a terminal asked for on stderr, without echo.
fn read_password(input: &mut impl BufRead) -> std::io::Result<String> {
    let tty = crate::sys::is_tty(0);
    let echoed = if tty {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        crate::sys::set_echo(0, false).ok()
    } else {
        None
    };
    let mut line = String::new();
    let r = input.read_line(&mut line);
    if let Some(was) = echoed {
        let _ = crate::sys::set_echo(0, was);
        eprintln!();
    }
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secrets::Secrets;
    use crate::auth::{verify, Check, Verdict};

    fn make(args: &[&str], pw: &str) -> (i32, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let code = run(&args, &mut pw.as_bytes(), &mut out);
        (code, String::from_utf8(out).unwrap().trim().to_string())
    }

    #[test]
    fn each_value_made_authenticates_the_password_it_was_made_from() {
        for args in [&[][..], &["-s", "sha512"][..], &["-ssha256"][..]] {
            let (code, value) = make(args, "tanstaaftanstaaf\n");
            assert_eq!(code, 0, "{args:?}");
            let s = Secrets::parse(std::path::Path::new("s"), &format!("tim {value}\n")).unwrap();
            let pw = |p: &str| Check::Password {
                user: "tim".into(),
                password: p.as_bytes().to_vec(),
            };
            assert!(
                matches!(verify(&s, &pw("tanstaaftanstaaf")), Verdict::Ok(_)),
                "{value}"
            );
            assert_eq!(verify(&s, &pw("tanstaaf")), Verdict::No, "{value}");
        }
        // Two hashes of one password differ: the salt is fresh.
        assert_ne!(
            make(&["-s", "sha512"], "x\n").1,
            make(&["-s", "sha512"], "x\n").1
        );
        assert_eq!(make(&["-s", "md4"], "x\n").0, ex::USAGE);
        assert_eq!(make(&[], "\n").0, ex::DATAERR);
    }
}
