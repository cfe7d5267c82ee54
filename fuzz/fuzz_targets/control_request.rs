//! The control socket's request parser: datagrams any local user can send.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = etrnd::event_loop::control::Request::parse(data);
});
