use super::*;
use crate::vocab::Mailbox;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!(
            "etrnd-unit-{tag}-{}-{n}-{}",
            std::process::id(),
            now_micros()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn env() -> Envelope {
    Envelope {
        arrival: 100,
        client: "127.0.0.1".into(),
        helo: "c.example".into(),
        protocol: "ESMTP".into(),
        eight_bit: false,
        sender: Some(Mailbox::parse("s@example.org").unwrap()),
        recipients: vec![Recipient {
            address: Mailbox::parse("u@client.dom").unwrap(),
            dest: Destination::Remote {
                channel: "smtp-etrn".into(),
                host: "mail.client.dom".into(),
            },
            dsn: Default::default(),
        }],
        dsn: Default::default(),
        smtputf8: false,
    }
}

fn names(dir: &Path) -> Vec<String> {
    list_dir(dir).unwrap()
}

#[test]
fn commit_makes_a_verified_queue_file() {
    let t = TempDir::new("commit");
    let mut s = Spool::open(&t.0).unwrap();
    let mut inc = s.begin(&env()).unwrap();
    inc.write(b"Subject: hi\r\n\r\nbody\r\n");
    let id = s.commit(vec![inc]).pop().unwrap().unwrap();
    assert!(names(&t.0.join("tmp")).is_empty());
    assert_eq!(names(&t.0.join("queue")), vec![id.to_string()]);
    let data = fs::read(s.queue_path(id)).unwrap();
    check(&data).unwrap();
    let listed = s.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].envelope, env());
}

#[test]
fn buffered_writes_of_any_size_keep_every_octet_in_order() {
    let t = TempDir::new("buffered");
    let mut s = Spool::open(&t.0).unwrap();
    let mut want = Vec::new();
    let mut inc = s.begin(&env()).unwrap();
    let big: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let pieces: Vec<Vec<u8>> = (0..5_000u32)
        .map(|i| vec![b'0' + (i % 10) as u8])
        .chain([big.clone(), b"\r\n".to_vec(), vec![b'x'; WRITE_BUFFER], big])
        .collect();
    for p in &pieces {
        inc.write(p);
        want.extend_from_slice(p);
    }
    assert_eq!(inc.len() as usize, env().encode().len() + want.len());
    let id = s.commit(vec![inc]).pop().unwrap().unwrap();
    let (e, body) = s.open_message(id).unwrap();
    assert_eq!(e, env());
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut body.reader(), &mut got).unwrap();
    assert_eq!(got, want);
}

#[test]
fn ids_are_unique_and_increasing() {
    let t = TempDir::new("ids");
    let mut s = Spool::open(&t.0).unwrap();
    let batch: Vec<_> = (0..50).map(|_| s.begin(&env()).unwrap()).collect();
    let ids: Vec<_> = s.commit(batch).into_iter().map(|r| r.unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids);
}

#[test]
fn every_fault_leaves_nothing_in_queue() {
    for fault in [
        Fault::FsyncFile,
        Fault::Rename,
        Fault::FsyncDir,
        Fault::NoSpace,
    ] {
        let t = TempDir::new("fault");
        let mut s = Spool::open(&t.0).unwrap();
        s.fault = Some(fault);
        let mut inc = s.begin(&env()).unwrap();
        inc.write(b"x\r\n");
        let r = s.commit(vec![inc]).pop().unwrap();
        let err = r.expect_err("fault must fail the commit");
        assert_eq!(err.is_no_space(), fault == Fault::NoSpace, "{fault:?}");
        assert!(names(&t.0.join("queue")).is_empty(), "{fault:?}");
        assert!(names(&t.0.join("tmp")).is_empty(), "{fault:?}");
    }
}

#[test]
fn recovery_table() {
    let t = TempDir::new("recover");
    let mut s = Spool::open(&t.0).unwrap();
    // A good message.
    let mut inc = s.begin(&env()).unwrap();
    inc.write(b"good\r\n");
    let good = s.commit(vec![inc]).pop().unwrap().unwrap();
    let good_data = fs::read(s.queue_path(good)).unwrap();
    // Crash during DATA / after fsync but before rename: a stray temp file.
    let mut stray = s.begin(&env()).unwrap();
    stray.write(b"partial");
    drop(stray);
    // Torn files in queue/.
    let q = t.0.join("queue");
    fs::write(
        q.join("00000000000000a1"),
        &good_data[..good_data.len() / 2],
    )
    .unwrap();
    fs::write(
        q.join("00000000000000a2"),
        &good_data[..good_data.len() - envelope::TRAILER_LEN],
    )
    .unwrap();
    let mut bad_sum = good_data.clone();
    bad_sum[12] ^= 0x20;
    fs::write(q.join("00000000000000a3"), &bad_sum).unwrap();
    let mut nul = good_data.clone();
    nul.extend_from_slice(&[0; 4096]);
    fs::write(q.join("00000000000000a4"), &nul).unwrap();
    fs::write(q.join("junk-name"), b"x").unwrap();
    // A journal without its message.
    fs::write(t.0.join("state/00000000000000ff"), b"D 0 1\n").unwrap();

    let mut s2 = Spool::open(&t.0).unwrap();
    let mut loaded = Vec::new();
    let rec = s2.recover(|e| loaded.push((e.id, e.envelope))).unwrap();
    assert_eq!(rec.queued, vec![good]);
    assert_eq!(loaded, vec![(good, env())], "only the good file is loaded");
    assert_eq!(rec.removed_tmp, 1);
    assert_eq!(rec.quarantined.len(), 5);
    assert_eq!(rec.removed_state, 1);
    assert_eq!(names(&q), vec![good.to_string()]);
    assert_eq!(names(&t.0.join("corrupt")).len(), 5);
    assert!(names(&t.0.join("tmp")).is_empty());
    // New ids come after existing ones.
    let inc = s2.begin(&env()).unwrap();
    assert!(inc.id > good);
}

#[test]
fn journal_append() {
    let t = TempDir::new("journal");
    let mut s = Spool::open(&t.0).unwrap();
    let inc = s.begin(&env()).unwrap();
    let id = s.commit(vec![inc]).pop().unwrap().unwrap();
    s.record(id, &StateRecord::Delivered { idx: 0, at: 5 })
        .unwrap();
    let listed = s.list().unwrap();
    assert_eq!(
        listed[0].state,
        vec![StateRecord::Delivered { idx: 0, at: 5 }]
    );
}

/// `open_message` gives the envelope and the body octets, small (one read, kept) or
/// large (streamed by position), and refuses a file whose checksum is wrong.
#[test]
fn open_message_streams_small_and_large_bodies_and_verifies() {
    let d = TempDir::new("open");
    let mut s = Spool::open(&d.0).unwrap();
    for size in [10usize, 70_000, 300_000] {
        let mut body = Vec::new();
        let mut i = 0u32;
        while body.len() < size {
            body.extend_from_slice(format!("line {i} \u{e9}\r\n").as_bytes());
            i += 1;
        }
        let mut inc = s.begin(&env()).unwrap();
        inc.write(&body);
        let id = s.commit(vec![inc]).pop().unwrap().unwrap();
        let (e, b) = s.open_message(id).unwrap();
        assert_eq!(e.recipients.len(), 1);
        assert_eq!(b.len(), body.len() as u64);
        assert!(b.has_8bit());
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut b.reader(), &mut got).unwrap();
        assert_eq!(got, body, "size {size}");
        // One flipped octet in the middle: refused.
        let p = s.queue_path(id);
        let mut raw = fs::read(&p).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 1;
        fs::write(&p, &raw).unwrap();
        let err = s.open_message(id).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}

#[test]
fn missing_parents_are_made_0755_and_the_spools_folders_are_0700_again_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("modes");
    let root = t.0.join("srv/etrnd/spool");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    Spool::open(&root).unwrap();
    assert_eq!(mode(&t.0.join("srv")), 0o755);
    assert_eq!(mode(&t.0.join("srv/etrnd")), 0o755);
    assert_eq!(mode(&root), 0o711);
    assert_eq!(mode(&root.join("queue")), 0o700);
    // As a backup's archive restores them.
    for d in ["queue", "hold", "index"] {
        fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    Spool::open(&root).unwrap();
    for d in ["queue", "hold", "index"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
}
