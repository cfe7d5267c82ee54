//! SMTP command lines (with and without SMTPUTF8: UTF-8 addresses, IDNA domains,
//! DSN parameters, BDAT), `sendmail -bs`'s DATA reader and sendmail's arguments:
//! the parsers must never panic, and a UTF-8 address that parses prints back as
//! one that parses again, to the same mailbox.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = etrnd::smtp::command::parse(data);
    let _ = etrnd::smtp::command::parse_in(data, Some("mx.example"), true);
    let _ = etrnd::tools::sendmail::parse_args(&["-N".into(), String::from_utf8_lossy(data).into_owned()]);
    let _ = etrnd::smtp::line::next_command_line(data);
    let _ = etrnd::tools::sendmail_bs::read_data(&mut &data[..], 4096);
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = etrnd::tools::sendmail::parse_args(&args);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = etrnd::smtp::parse_path(s);
        if let Ok(Some(m)) = etrnd::smtp::parse_path_utf8(s) {
            let again = etrnd::smtp::parse_path_utf8(&format!("<{m}>"));
            assert_eq!(again, Ok(Some(m)), "a parsed address reads back the same");
        }
        let _ = etrnd::vocab::sanitize(data);
        let _ = etrnd::smtp::etrn_target::EtrnTarget::parse(s);
    }
});
