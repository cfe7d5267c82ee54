//! The commit order, read off a system-call trace (reference/bad-input.md goal G3): no
//! byte of a message's `250` is sent before its file was fsynced, renamed into
//! `queue/`, and `queue/` fsynced after that rename — also when several sessions
//! commit in the same batch. Needs strace; skipped without it.

use crate::util::{Client, Daemon};

#[test]
fn no_250_before_fsync_rename_and_directory_fsync() {
    let Some(strace) = crate::util::need_tool("strace", "strace") else {
        return;
    };
    let d = Daemon::start();
    let st = crate::util::Strace::attach(
        &strace,
        &d,
        "trace=fsync,fdatasync,rename,renameat,renameat2,write,sendto,sendmsg,writev",
    );
    let addr = d.addr();
    let senders: Vec<_> = (0..5)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::hello(addr);
                (0..20)
                    .map(|i| {
                        let body = format!("Subject: {t}/{i}\r\n\r\nx\r\n");
                        c.send_message("s@test.example", &["u@client.dom"], &body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = senders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let lines = st.finish();
    let find = |from: usize, f: &dyn Fn(&str) -> bool| -> Option<usize> {
        (from..lines.len()).find(|&i| f(&lines[i]))
    };
    let mut batched = 0;
    for id in &ids {
        let tmp = format!("/tmp/{id}");
        let queued = format!("/queue/{id}");
        let sync = find(0, &|l| {
            l.starts_with("fsync(") && l.contains(&format!("{tmp}>")) && l.ends_with("= 0")
        })
        .unwrap_or_else(|| panic!("{id}: no fsync of the temp file"));
        let rename = find(0, &|l| {
            l.starts_with("rename") && l.contains(&tmp) && l.contains(&queued)
        })
        .unwrap_or_else(|| panic!("{id}: no rename into queue/"));
        let dir_sync = find(rename, &|l| {
            l.starts_with("fsync(") && l.contains("/queue>") && l.ends_with("= 0")
        })
        .unwrap_or_else(|| panic!("{id}: no fsync of queue/ after the rename"));
        let reply = find(0, &|l| {
            l.contains("<socket:") && l.contains(&format!("queued as {id}"))
        })
        .unwrap_or_else(|| panic!("{id}: its 250 is not in the trace"));
        assert!(
            sync < rename && rename < dir_sync && dir_sync < reply,
            "{id}: fsync at {sync}, rename at {rename}, dir fsync at {dir_sync}, 250 at {reply}"
        );
        // Another message's rename between this one's and the directory fsync: a batch.
        if lines[rename + 1..dir_sync]
            .iter()
            .any(|l| l.starts_with("rename"))
        {
            batched += 1;
        }
    }
    eprintln!(
        "commit order: {} messages, each fsync < rename < dir fsync < 250; {batched} committed in a batch with others",
        ids.len()
    );
}
