//! What a message becomes on its way out (`outgoing`): the MIME walk that makes
//! 8-bit content 7-bit, and the header rewriting of masquerading, over any octets a
//! client could have sent, and the address lists of a local submission. No panic;
//! what comes out of a conversion is 7-bit; qualifying twice changes nothing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

use etrnd::config::generic::Generic;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = etrnd::message::outgoing::seven_bit(data) {
        assert!(out.iter().all(|&b| b < 0x80) || data.iter().all(|&b| b < 0x80));
    }
    let g = Generic::parse(
        Path::new("g"),
        "root@router.lan alerts@example.org\n@router.lan @example.org\n",
    )
    .unwrap();
    let h = etrnd::message::outgoing::header_len(data);
    let _ = etrnd::message::outgoing::masquerade(&data[..h], &g);
    let _ = etrnd::message::outgoing::quoted_printable(data);
    // A local submission's address lists: what is qualified once stays as it is.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = etrnd::vocab::address_list::addresses(text);
        if let Some(q) = etrnd::vocab::address_list::qualify(text, "host.example") {
            assert_eq!(etrnd::vocab::address_list::qualify(&q, "host.example"), None, "{q:?}");
        }
    }
});
