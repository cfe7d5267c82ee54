//! Spool files as read back from disk: queue files, journals, drop files, and the
//! daemon's notes (`clients`) and link states (`links`), and the hold store's
//! per-destination index files and their names.
#![no_main]
use libfuzzer_sys::fuzz_target;

use etrnd::store::spool::drop::Drop;
use etrnd::store::spool::envelope::{verify, Envelope, StateRecord};

fuzz_target!(|data: &[u8]| {
    let _ = verify(data);
    // An envelope read back is written back the same: its DSN and SMTPUTF8
    // lines included.
    if let Ok((env, _)) = Envelope::decode(data) {
        let again = Envelope::decode(&env.encode()).map(|(e, _)| e);
        assert_eq!(again.as_ref(), Ok(&env));
    }
    let _ = StateRecord::decode_all(data);
    if let Ok(d) = Drop::decode(data) {
        assert_eq!(Drop::decode(&d.encode()).as_ref(), Ok(&d), "a drop file reads back");
    }
    // A summary file read back is written back the same.
    if let Some((_, all)) = etrnd::store::spool::held::parse_summary(data) {
        for (name, sum) in all {
            let line = sum.encode(&name);
            let line = line.strip_suffix('\n').unwrap_or(&line);
            let again = etrnd::store::spool::held::Summary::decode(line.as_bytes());
            assert_eq!(again, Some((name, sum)));
        }
    }
    // An index line read back is written back the same.
    for e in etrnd::store::spool::held::parse_index(data) {
        let line = e.encode();
        assert_eq!(
            etrnd::store::spool::held::IndexEntry::decode(line.strip_suffix('\n').unwrap_or(&line).as_bytes()),
            Some(e)
        );
    }
    // The daemon's state files: POSTOFFICE/clients and POSTOFFICE/links.
    if let Ok(t) = std::str::from_utf8(data) {
        let n = etrnd::store::notes::Notes::parse(t);
        let _ = n.render();
        let _ = etrnd::daemon::netlinks::parse_states(t);
        if let Some((c, h)) = etrnd::store::spool::held::index_key(t) {
            assert_eq!(etrnd::store::spool::held::index_name(&c, &h).as_deref(), Some(t));
        }
    }
});
