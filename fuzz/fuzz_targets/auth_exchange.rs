//! The AUTH side of a server session's input (smtp::sasl): an `AUTH` argument and
//! the client's lines, each a step of PLAIN, LOGIN or CRAM-MD5; strict base64; and
//! the auth helper's request and reply lines (auth::guard).
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::smtp::sasl::{Exchange, Mech, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let mech = [Mech::Plain, Mech::Login, Mech::CramMd5][first as usize % 3];
    let mut lines = rest.split(|&b| b == b'\n');
    let initial = lines.next().and_then(|l| std::str::from_utf8(l).ok());
    let initial = if first & 0x80 != 0 { initial } else { None };
    let (ex, mut step) = Exchange::start(mech, initial, || "<1.2@h.example>".to_string());
    if let Some(mut ex) = ex {
        for l in lines {
            if !matches!(step, Step::Challenge(_)) {
                break;
            }
            step = ex.feed(l);
        }
    }
    let _ = etrnd::auth::base64::decode(rest);
    if let Ok(t) = std::str::from_utf8(rest) {
        let _ = etrnd::auth::guard::parse_request(t);
        let _ = etrnd::auth::guard::parse_reply(t);
        let _ = etrnd::auth::guard::parse_token_request(t);
    }
});
