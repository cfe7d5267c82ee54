//! `db/recipients`: no panic on any text; a file that loads takes every address it
//! lists, and only a listed domain refuses anyone.
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::config::recipients::{Check, Recipients};
use etrnd::vocab::Mailbox;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = Recipients::parse(std::path::Path::new("db/recipients"), text) else {
        return;
    };
    for line in text.lines() {
        let entry = line.trim();
        if entry.starts_with('#') {
            continue;
        }
        if let Ok(m) = Mailbox::parse_in(entry, true) {
            assert_eq!(r.check(&m), Check::Valid, "{entry:?} is listed");
        }
    }
    if let Ok(m) = Mailbox::parse("nobody-listed-this@unlisted.invalid") {
        if !text.contains("unlisted.invalid") {
            assert_eq!(r.check(&m), Check::Unlisted);
        }
    }
});
