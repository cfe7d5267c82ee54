//! The helper's side of its socket: request lines from the daemon (which the helper
//! must not trust) and verdict lines back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = std::str::from_utf8(data) else { return };
    if let Ok((id, user)) = etrnd::local::helper::parse_request(t) {
        assert!(!user.contains('/') && !user.starts_with('.'));
        assert_eq!(id.to_string().len(), 16);
    }
    match etrnd::local::helper::parse(t) {
        Ok(etrnd::local::helper::Request::Mailbox(_, user)) => assert!(!user.contains('/')),
        Ok(etrnd::local::helper::Request::Target(_, idx)) => assert!(idx < 1_000_000),
        Err(_) => {}
    }
    let _ = etrnd::local::helper::parse_verdict(t);
});
