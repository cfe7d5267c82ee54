//! SMTP command lines: the parser must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = etrnd::smtp::command::parse(data);
    let _ = etrnd::smtp::line::next_command_line(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = etrnd::smtp::parse_path(s);
        let _ = etrnd::smtp::etrn::EtrnTarget::parse(s);
    }
});
