//! Spool files as read back from disk: queue files, journals, drop files, and the
//! daemon's notes (`clients`) and link states (`links`).
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::spool::drop::Drop;
use etrnd::spool::envelope::{verify, Envelope, StateRecord};

fuzz_target!(|data: &[u8]| {
    let _ = verify(data);
    let _ = Envelope::decode(data);
    let _ = StateRecord::decode_all(data);
    let _ = Drop::decode(data);
    // The daemon's state files: POSTOFFICE/clients and POSTOFFICE/links.
    if let Ok(t) = std::str::from_utf8(data) {
        let n = etrnd::clients::Notes::parse(t);
        let _ = n.render();
        let _ = etrnd::event_loop::netlinks::parse_states(t);
    }
});
