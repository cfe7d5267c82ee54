//! SMTP command lines, `sendmail -bs`'s DATA reader and sendmail's arguments: the
//! parsers must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = etrnd::smtp::command::parse(data);
    let _ = etrnd::smtp::line::next_command_line(data);
    let _ = etrnd::tools::sendmail_bs::read_data(&mut &data[..], 4096);
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = etrnd::tools::sendmail::parse_args(&args);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = etrnd::smtp::parse_path(s);
        let _ = etrnd::smtp::etrn_target::EtrnTarget::parse(s);
    }
});
