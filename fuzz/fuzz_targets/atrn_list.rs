//! The ATRN argument (RFC 2645 §5.2.1) as the server parses it, and the `atrn`
//! control request of `etrnd atrn`: no panic, and what is accepted is bounded and
//! made of names only.
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::smtp::atrn::{covers, parse_list, MAX_ATRN_DOMAINS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = etrnd::smtp::command::parse(data);
        return;
    };
    if let Ok(list) = parse_list(text) {
        assert!(list.len() <= MAX_ATRN_DOMAINS);
        for d in &list {
            assert!(d.len() <= 253 && d.contains('.'));
            assert!(d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
            assert!(covers(d, d));
            // Accepted names parse again to themselves.
            assert_eq!(parse_list(d).as_deref(), Ok(std::slice::from_ref(d)));
        }
    }
    let _ = covers(text, "client.dom");
    let _ = etrnd::smtp::command::parse(format!("ATRN {text}").as_bytes());
    let _ = etrnd::daemon::control::Request::parse(format!("atrn {text}").as_bytes());
});
