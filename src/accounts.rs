//! `Accounts`: a snapshot of the system's accounts, taken when the configuration is
//! loaded (start, SIGHUP) and again when the passwd file changes, so the RCPT path
//! and in-process local delivery never read a file. The snapshot reads the passwd
//! file itself (`sys::pwfile`: the `files` source of nsswitch.conf), never through
//! NSS, so a static binary works and a directory server never blocks the loop. A `getpwnam` per RCPT opens
//! `/etc/nsswitch.conf` and `/etc/passwd` each time, and with LDAP or sssd behind
//! NSS it blocks the whole loop on the network.
//!
//! Rejected: a lookup per RCPT with a cache (still blocks on a miss, and an attacker
//! chooses the misses); asking the privileged helper (a round trip per RCPT, and the
//! helper exists only when started as root).

use std::collections::HashMap;
use std::path::Path;

/// The file whose change triggers a new snapshot.
pub const PASSWD_FILE: &str = "/etc/passwd";

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// What identifies a version of the passwd file: modification time (seconds and
/// nanoseconds), inode and size.
type Stamp = (i64, i64, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.mtime(), m.mtime_nsec(), m.ino(), m.size()))
}

/// The snapshot.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    by_name: HashMap<Box<str>, Account>,
    stamp: Option<Stamp>,
}

impl Accounts {
    /// Reads every account the passwd database lists, now.
    pub fn snapshot() -> Accounts {
        let stamp = stamp(Path::new(PASSWD_FILE));
        let by_name = crate::sys::all_accounts()
            .into_iter()
            .map(|(name, uid, gid, home)| (name.into_boxed_str(), Account { uid, gid, home }))
            .collect();
        Accounts { by_name, stamp }
    }

    /// A fixed set (tests).
    pub fn from_list(list: &[(&str, u32, u32, &str)]) -> Accounts {
        Accounts {
            by_name: list
                .iter()
                .map(|(n, uid, gid, home)| {
                    let a = Account {
                        uid: *uid,
                        gid: *gid,
                        home: home.to_string(),
                    };
                    (Box::from(*n), a)
                })
                .collect(),
            stamp: None,
        }
    }

    /// The account called `name`.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name)
    }

    /// Whether an account called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether the passwd file changed since the snapshot (one `stat`, no NSS).
    pub fn is_stale(&self) -> bool {
        self.stamp.is_some() && stamp(Path::new(PASSWD_FILE)) != self.stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_has_root_and_answers_without_nss() {
        let a = Accounts::snapshot();
        assert_eq!(a.get("root").map(|r| r.uid), Some(0));
        assert!(!a.contains("no-such-user-here"));
        assert!(!a.is_stale(), "nothing changed since the snapshot");
    }
}
