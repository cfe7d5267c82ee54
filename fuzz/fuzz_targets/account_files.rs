//! The account files the daemon reads itself instead of asking NSS: /etc/passwd,
//! /etc/group and the passwd/group lines of /etc/nsswitch.conf.
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::sys::pwfile;

fuzz_target!(|data: &[u8]| {
    let users = pwfile::parse_passwd(data, 10_000);
    let groups = pwfile::parse_group(data, 10_000);
    for u in users.iter().take(16) {
        let l = pwfile::group_list(&groups, &u.name, u.gid, 1024);
        assert!(!l.is_empty() && l.len() <= 1024 && l[0] == u.gid);
    }
    for db in ["passwd", "group"] {
        if let Some(s) = pwfile::nss_sources(data, db) {
            let _ = pwfile::reads_files(&s);
        }
    }
});
