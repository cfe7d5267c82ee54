//! The DSN parameters of MAIL and RCPT (RFC 3461) and their xtext: no panic; what
//! is accepted decodes to text without control characters, is bounded, and encodes
//! back to a value that decodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::smtp::dsn::{xtext_decode, xtext_encode, MailDsn, Notify, RcptDsn, MAX_ENVID};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = xtext_decode(text) {
        assert!(!v.chars().any(char::is_control));
        assert!(v.len() <= text.len());
        assert_eq!(xtext_decode(&xtext_encode(&v)).as_deref(), Ok(v.as_str()));
    }
    if let Ok(n) = Notify::parse(text) {
        assert_eq!(Notify::parse(&n.render()), Ok(n));
    }
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    let mut m = MailDsn::default();
    if m.take(key, value) == Ok(true) {
        if let Some(e) = &m.envid {
            assert!(value.len() <= MAX_ENVID && !e.chars().any(char::is_control));
        }
        assert!(m.take(key, value).is_err(), "a repeat is refused");
    }
    let mut r = RcptDsn::default();
    if r.take(key, value) == Ok(true) {
        if let Some(o) = &r.orcpt {
            assert!(!o.address.chars().any(char::is_control));
            let again = o.render();
            let mut r2 = RcptDsn::default();
            assert_eq!(r2.take("ORCPT", &again), Ok(true));
            assert_eq!(r2.orcpt.as_ref(), Some(o));
        }
        assert!(r.take(key, value).is_err(), "a repeat is refused");
    }
});
