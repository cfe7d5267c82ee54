//! Spool files as read back from disk: queue files, journals, drop files.
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::spool::drop::Drop;
use etrnd::spool::envelope::{verify, Envelope, StateRecord};

fuzz_target!(|data: &[u8]| {
    let _ = verify(data);
    let _ = Envelope::decode(data);
    let _ = StateRecord::decode_all(data);
    let _ = Drop::decode(data);
});
