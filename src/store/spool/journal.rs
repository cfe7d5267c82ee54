//! Per-message journals (`state/<id>`): appended records of what became of each
//! recipient and of the operator's actions, read back at start-up.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::{append, read_file, MessageId, Spool, SpoolError, StateRecord};

impl Spool {
    /// The journal of the message named `name` (empty when it has none).
    pub(super) fn journal(&self, name: &str) -> Vec<StateRecord> {
        read_file(&self.state.join(name))
            .map(|d| StateRecord::decode_all(&d))
            .unwrap_or_default()
    }

    /// Appends a record to a message's journal and fsyncs it.
    pub fn record(&self, id: MessageId, rec: &StateRecord) -> Result<(), SpoolError> {
        self.record_all(id, std::slice::from_ref(rec))
    }

    /// Appends records to a message's journal with one write and one fsync.
    pub fn record_all(&self, id: MessageId, recs: &[StateRecord]) -> Result<(), SpoolError> {
        if recs.is_empty() {
            return Ok(());
        }
        let p = self.state.join(id.to_string());
        let text: String = recs.iter().map(StateRecord::encode).collect();
        let f = append(&p, text.as_bytes())?;
        f.sync_data().map_err(|e| SpoolError::new("fsync", &p, e))
    }

    /// Appends the records of many messages, one write per journal, and then syncs
    /// every journal that holds a record that needs it ([`StateRecord::needs_sync`])
    /// in one pass: writeback is started for all of them first, so the first sync's
    /// journal commit carries the others' and their syncs find their data on its way
    /// (as the commit of a batch of messages does). The failures, per message.
    pub fn record_batch(
        &self,
        batch: &[(MessageId, Vec<StateRecord>)],
    ) -> Vec<(MessageId, SpoolError)> {
        let mut failed = Vec::new();
        let mut to_sync = Vec::new();
        for (id, recs) in batch {
            if recs.is_empty() {
                continue;
            }
            let p = self.state.join(id.to_string());
            let text: String = recs.iter().map(StateRecord::encode).collect();
            match append(&p, text.as_bytes()) {
                Ok(f) if recs.iter().any(StateRecord::needs_sync) => {
                    crate::sys::start_writeback(&f);
                    to_sync.push((*id, p, f));
                }
                Ok(_) => {}
                Err(e) => failed.push((*id, e)),
            }
        }
        for (id, p, f) in to_sync {
            if let Err(e) = f.sync_data() {
                failed.push((id, SpoolError::new("fsync", &p, e)));
            }
        }
        failed
    }

    /// Appends a record as a tool run by root or `USER` does (`etrnd queue` with the
    /// daemon down): like [`Spool::record`], and a journal it creates is given to
    /// the owner of `state/`, so the daemon can read and extend it. Only an
    /// existing message gets a journal, and links are never followed.
    pub fn record_owned(&self, id: MessageId, rec: &StateRecord) -> Result<(), SpoolError> {
        use std::os::unix::fs::MetadataExt;
        let p = self.state.join(id.to_string());
        let owner = fs::symlink_metadata(&self.state)
            .map_err(|e| SpoolError::new("stat", &self.state, e))?;
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| SpoolError::new("open", &p, e))?;
        let meta = f.metadata().map_err(|e| SpoolError::new("stat", &p, e))?;
        if !meta.is_file() {
            return Err(SpoolError::new(
                "open",
                &p,
                io::Error::other("not a regular file"),
            ));
        }
        if meta.uid() != owner.uid() {
            crate::sys::chown_fd(&f, owner.uid(), owner.gid())
                .map_err(|e| SpoolError::new("chown", &p, e))?;
        }
        f.write_all(rec.encode().as_bytes())
            .map_err(|e| SpoolError::new("write", &p, e))?;
        f.sync_data().map_err(|e| SpoolError::new("fsync", &p, e))
    }
}
