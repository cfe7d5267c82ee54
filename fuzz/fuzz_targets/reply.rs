//! Server replies as the outbound client parses them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut p = etrnd::smtp::client::ReplyParser::default();
    for chunk in data.chunks(7) {
        p.feed(chunk);
        while let Some(r) = p.next_reply() {
            if r.is_err() {
                return;
            }
        }
    }
});
