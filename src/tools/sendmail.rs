//! `etrnd sendmail` (also the binary invoked as `sendmail`): the interface every
//! local program expects. Reads a message on standard input, adds the headers a
//! message must have, checks every recipient against the routing files (an unknown
//! local user is refused at once, exit 67), and leaves the message in the spool's drop
//! folder, waking the daemon if it runs. Works while the daemon is down: the message
//! waits and is picked up when it starts.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::cli::exit as ex;
use crate::config::Config;
use crate::smtp::trace::rfc5322_date;
use crate::store::spool::drop::Drop;
use crate::vocab::{Mailbox, ReversePath};

/// Parsed sendmail options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args {
    /// `-f` / `-r`: envelope sender.
    pub sender: Option<String>,
    /// `-F`: full name for a generated `From:`.
    pub full_name: Option<String>,
    /// `-t`: recipients from To/Cc/Bcc.
    pub from_headers: bool,
    /// Without `-i`/`-oi`, a line with a single dot ends the message.
    pub dot_ends: bool,
    /// Recipients on the command line.
    pub rcpts: Vec<String>,
    /// What to do (`-b…`, `-q`).
    pub mode: Mode,
    /// `-N`, `-R`, `-V`: what the sender asks to be told (RFC 3461).
    pub notify: Option<crate::vocab::dsn::Notify>,
    /// `-R full|hdrs` and `-V envid`.
    pub dsn: crate::vocab::dsn::MailDsn,
}

/// sendmail's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `-bm` (the default): submit a message.
    #[default]
    Deliver,
    /// `-bp`: list the queue (`mailq`).
    List,
    /// `-bs`: an SMTP session on stdin and stdout.
    Smtp,
    /// `-bi`: rebuild the aliases database (nothing to do here).
    Init,
    /// `-bv`: verify the recipients (`route`).
    Verify,
    /// `-q`: run the queue (`flush`).
    Flush,
}

/// Parses sendmail's options (the common ones; modes other than `-bm`, `-bp`,
/// `-bs`, `-bi` and `-bv` are refused with their name, other `-o` options ignored).
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        dot_ends: true,
        ..Args::default()
    };
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        if arg == "--" {
            a.rcpts.extend(it.by_ref().cloned());
            break;
        }
        let Some(opt) = arg.strip_prefix('-').filter(|o| !o.is_empty()) else {
            a.rcpts.push(arg.clone());
            continue;
        };
        // The first character, whatever it is (an argument need not be ASCII).
        let (flag, rest) = opt.split_at(opt.chars().next().map_or(0, char::len_utf8));
        let mut value = |name: &str| -> Result<String, String> {
            if !rest.is_empty() {
                Ok(rest.to_string())
            } else {
                it.next().cloned().ok_or(format!("-{name} needs a value"))
            }
        };
        match flag {
            "f" | "r" => a.sender = Some(value(flag)?),
            "F" => a.full_name = Some(value("F")?),
            "t" => a.from_headers = true,
            "i" => a.dot_ends = false,
            "o" => {
                let o = value("o")?;
                if o == "i" {
                    a.dot_ends = false;
                }
            }
            "b" => {
                a.mode = match value("b")?.as_str() {
                    "m" => Mode::Deliver,
                    "p" => Mode::List,
                    "s" => Mode::Smtp,
                    "i" => Mode::Init,
                    "v" => Mode::Verify,
                    other => {
                        return Err(format!(
                            "mode -b{other} is not supported (-bm, -bp, -bs, -bi and -bv are)"
                        ))
                    }
                }
            }
            // `-q`, `-q30m`, `-qR…`: one run of the queue, now.
            "q" => a.mode = Mode::Flush,
            // Flags that take no value and change nothing here.
            "v" | "U" | "m" | "e" | "n" => {}
            // Delivery status notifications, as sendmail takes them: `-N never` or
            // `-N success,failure,delay`, `-R full|hdrs`, `-V envid` (as is).
            "N" => {
                let v = value("N")?;
                let n = crate::vocab::dsn::Notify::parse(&v).map_err(|e| format!("-N {v}: {e}"))?;
                a.notify = Some(n);
            }
            "R" => {
                let v = value("R")?;
                let r = crate::vocab::dsn::Ret::parse(&v).map_err(|e| format!("-R {v}: {e}"))?;
                a.dsn.ret = Some(r);
            }
            "V" => {
                let v = value("V")?;
                if !crate::vocab::dsn::envid_ok(&v) {
                    return Err(format!(
                        "-V: an envelope id is printable ASCII, at most {} characters in xtext",
                        crate::vocab::dsn::MAX_ENVID
                    ));
                }
                a.dsn.envid = Some(v);
            }
            // Options whose value is ignored (`-B 8BITMIME`, `-X log`, `-h hops`,
            // `-L label`, `-O opt`, `-C file`).
            "B" | "X" | "h" | "L" | "O" | "C" => {
                let _ = value(flag)?;
            }
            _ => return Err(format!("unknown option -{flag}")),
        }
    }
    Ok(a)
}

/// Header fields: (lower-case name, the field's octets as written, continuation
/// lines included), and the body. The header section ends at the first empty line,
/// or at the first line that is not a field (`hello world` piped to `sendmail` is
/// all body): the fields added later go before it, never after body text.
pub(crate) fn split_headers(msg: &[u8]) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    let mut at = 0;
    while at < msg.len() {
        let end = msg[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(msg.len(), |p| at + p + 2);
        let line = &msg[at..end];
        // A leading mbox "From " line is not part of the message (as sendmail).
        if at == 0 && line.starts_with(b"From ") {
            at = end;
            continue;
        }
        if line == b"\r\n" {
            return (fields, msg[end..].to_vec());
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some(last) = fields.last_mut() {
                last.1.extend_from_slice(line);
                at = end;
                continue;
            }
        }
        // A field name: printable ASCII but the colon, then the colon.
        let name_len = line
            .iter()
            .position(|&b| !(b'!'..=b'~').contains(&b) || b == b':')
            .unwrap_or(line.len());
        if name_len == 0 || line.get(name_len) != Some(&b':') {
            break;
        }
        let name = String::from_utf8_lossy(&line[..name_len]).to_ascii_lowercase();
        fields.push((name, line.to_vec()));
        at = end;
    }
    (fields, msg[at..].to_vec())
}

pub use crate::vocab::address::qualify;

fn random_name() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b[..16].copy_from_slice(&(t ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads the message: LF or CR LF lines to CR LF; without `-i` a lone `.` ends it.
fn read_message(input: &mut impl Read, dot_ends: bool, limit: u64) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    input
        .take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the message: {e}"))?;
    if raw.len() as u64 > limit {
        return Err(format!("message larger than MAX_MESSAGE_SIZE ({limit})"));
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if dot_ends && content == b"." {
            break;
        }
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// Runs `sendmail`: returns the exit code.
pub fn run(cfg: &Config, args: &Args, input: &mut impl Read, err: &mut impl Write) -> i32 {
    let host = cfg.main.hostname.clone();
    let user = crate::sys::current_user().unwrap_or_else(|| "nobody".into());
    let msg = match read_message(input, args.dot_ends, cfg.main.max_message_size) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(err, "sendmail: {e}");
            return ex::DATAERR;
        }
    };
    let (mut fields, body) = split_headers(&msg);
    let mut rcpt_text: Vec<String> = args.rcpts.clone();
    if args.from_headers {
        for (name, text) in &fields {
            if ["to", "cc", "bcc"].contains(&name.as_str()) {
                let text = String::from_utf8_lossy(text);
                let value = text.split_once(':').map(|x| x.1).unwrap_or("");
                rcpt_text.extend(crate::vocab::address_list::addresses(
                    &value.replace("\r\n", ""),
                ));
            }
        }
        fields.retain(|(n, _)| n != "bcc");
    }
    let mut rcpts = Vec::new();
    for r in &rcpt_text {
        match qualify(r, &host) {
            Ok(m) if !rcpts.contains(&m) => rcpts.push(m),
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(err, "sendmail: {e}");
                return ex::DATAERR;
            }
        }
    }
    if rcpts.is_empty() {
        let _ = writeln!(err, "sendmail: no recipients");
        return ex::USAGE;
    }
    let sender: ReversePath = match &args.sender {
        Some(s) if s.is_empty() || s == "<>" => None,
        Some(s) => match qualify(s, &host) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = writeln!(err, "sendmail: sender: {e}");
                return ex::DATAERR;
            }
        },
        None => qualify(&user, &host).ok(),
    };
    for m in &rcpts {
        if let Err(why) = cfg.router.destinations(m, true) {
            let _ = writeln!(err, "sendmail: {m}: {why}");
            return 67; // EX_NOUSER
        }
    }
    let asked = Asked {
        notify: args.notify,
        dsn: args.dsn.clone(),
    };
    match queue(
        cfg,
        sender,
        rcpts,
        fields,
        &body,
        args.full_name.as_deref(),
        &asked,
    ) {
        Ok(()) => ex::OK,
        Err(e) => {
            let _ = writeln!(err, "sendmail: cannot queue the message: {e}");
            75 // EX_TEMPFAIL
        }
    }
}

/// What the submitter asked to be told (`-N`, `-R`, `-V`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Asked {
    pub(crate) notify: Option<crate::vocab::dsn::Notify>,
    pub(crate) dsn: crate::vocab::dsn::MailDsn,
}

/// Completes a submission's header (`From:`, `Date:`, `Message-ID:` where missing,
/// addresses without a domain qualified with HOSTNAME)
/// and writes it durably to the drop folder for the daemon's pickup.
pub(crate) fn queue(
    cfg: &Config,
    sender: ReversePath,
    rcpts: Vec<Mailbox>,
    mut fields: Vec<(String, Vec<u8>)>,
    body: &[u8],
    full_name: Option<&str>,
    asked: &Asked,
) -> io::Result<()> {
    let host = cfg.main.hostname.clone();
    // `To: bob` from a local program names bob here, wherever a copy goes.
    for (name, text) in fields.iter_mut() {
        if crate::vocab::address_list::ADDRESS_FIELDS.contains(&name.as_str()) {
            let colon = text.iter().position(|&b| b == b':').map_or(0, |c| c + 1);
            // Only fields in ASCII are looked at (qualify leaves others alone).
            let Ok(value) = std::str::from_utf8(&text[colon..]) else {
                continue;
            };
            if let Some(v) = crate::vocab::address_list::qualify(value, &host) {
                text.truncate(colon);
                text.extend_from_slice(v.as_bytes());
            }
        }
    }
    let user = crate::sys::current_user().unwrap_or_else(|| "nobody".into());
    // The headers every message needs (RFC 5322 §3.6).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let has = |n: &str| fields.iter().any(|(x, _)| x == n);
    let mut added = String::new();
    if !has("from") {
        let addr = sender
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| format!("{user}@{host}"));
        match full_name {
            Some(n) => added.push_str(&format!(
                "From: \"{}\" <{addr}>\r\n",
                n.replace(['"', '\\', '\r', '\n'], "")
            )),
            None => added.push_str(&format!("From: {addr}\r\n")),
        }
    }
    if !has("date") {
        added.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    }
    if !has("message-id") {
        added.push_str(&format!(
            "Message-ID: <{}.{}@{host}>\r\n",
            now,
            random_name()
        ));
    }
    // The trace line is the daemon's (pickup), from the file's owner: nothing the
    // submitter writes can claim to be another user.
    let mut data = Vec::new();
    for (_, text) in &fields {
        data.extend_from_slice(text);
    }
    data.extend_from_slice(added.as_bytes());
    data.extend_from_slice(b"\r\n");
    data.extend_from_slice(body);
    // The file is the submitter's, mode 0644 in a folder nobody can list, under a
    // random name: others cannot find, read or remove it.
    // UTF-8 addresses need SMTPUTF8 wherever the message goes (RFC 6531).
    let smtputf8 =
        !rcpts.iter().all(Mailbox::is_ascii) || sender.as_ref().is_some_and(|s| !s.is_ascii());
    let d = Drop {
        uid: crate::sys::uid(),
        sender,
        rcpts,
        data,
        dsn: asked.dsn.clone(),
        notify: asked.notify,
        smtputf8,
    };
    write_drop(&cfg.main.postoffice, &d)
}

/// A drop file's mode, whatever the submitter's umask.
pub const DROP_MODE: u32 = 0o644;

fn write_drop(postoffice: &Path, d: &Drop) -> io::Result<()> {
    let dir = postoffice.join("drop");
    if !dir.is_dir() {
        // First use before the daemon ever ran: create the spool as the daemon would.
        crate::store::spool::Spool::open(postoffice)
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    let name = random_name();
    let tmp = dir.join(format!(".tmp.{name}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    // The mode is set, not left to the umask: mutt, cron jobs and careful users
    // run with umask 077, and a 0600 file of theirs is one the daemon (USER)
    // could never read. 0644 in a folder only root and USER may list, under a
    // random name, is what Postfix's maildrop does: others cannot find it.
    use std::os::unix::fs::PermissionsExt;
    let r = f
        .set_permissions(std::fs::Permissions::from_mode(DROP_MODE))
        .and_then(|()| f.write_all(&d.encode()))
        .and_then(|()| f.sync_all());
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dir.join(&name))?;
    // The folder (1733) can be opened, and so fsynced, only by root and USER. For
    // everyone else the file and its temporary name were made durable above: should
    // a power cut lose the rename, pickup takes the complete temporary file
    // (spool::drop::TEMP_GRACE), so an exit 0 is never a lost message.
    match std::fs::File::open(&dir) {
        Ok(d) => d.sync_all()?,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e),
    }
    // Wake the daemon; if it is not running, the message waits for it.
    if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
        let _ = s.send_to(b"!", postoffice.join("notify"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let v = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let a = v(&["-f", "me@x", "-t", "-oi", "you@y"]).unwrap();
        assert_eq!(a.sender.as_deref(), Some("me@x"));
        assert!(a.from_headers && !a.dot_ends);
        assert_eq!(a.rcpts, vec!["you@y"]);
        let a = v(&["-fme@x", "-i", "-FJohn Doe", "a", "b"]).unwrap();
        assert_eq!(a.full_name.as_deref(), Some("John Doe"));
        assert_eq!(a.rcpts.len(), 2);
        assert!(v(&["-bd"]).unwrap_err().contains("-bd is not supported"));
        assert!(v(&["-Q"]).is_err());
        assert!(
            v(&["-\u{e9}t\u{e9}"])
                .unwrap_err()
                .contains("unknown option"),
            "no panic"
        );
        for (args, mode) in [
            (&["-bp"][..], Mode::List),
            (&["-bs"], Mode::Smtp),
            (&["-bi"], Mode::Init),
            (&["-bv", "a"], Mode::Verify),
            (&["-q"], Mode::Flush),
            (&["-q30m"], Mode::Flush),
            (&["-bm", "a"], Mode::Deliver),
        ] {
            assert_eq!(v(args).unwrap().mode, mode, "{args:?}");
        }
        // -r is -f; the ignored options keep their values away from the recipients.
        let a = v(&[
            "-r", "me@x", "-oi", "-om", "-U", "-B", "8BITMIME", "-N", "never", "you",
        ])
        .unwrap();
        assert_eq!(a.sender.as_deref(), Some("me@x"));
        assert_eq!(a.rcpts, vec!["you"]);
        assert!(
            v(&["-q"]).unwrap().rcpts.is_empty(),
            "-q takes no recipient"
        );
    }

    #[test]
    fn the_header_section_is_kept_octet_for_octet_and_ends_where_fields_do() {
        let (f, body) = split_headers(b"Subject: caf\xe9\r\n\tmore\r\nTo: x\r\n\r\nbody\r\n");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, "subject");
        assert_eq!(f[0].1, b"Subject: caf\xe9\r\n\tmore\r\n".to_vec());
        assert_eq!(body, b"body\r\n");
        // No header section at all: everything is body.
        let (f, body) = split_headers(b"hello world\r\nsecond: line\r\n");
        assert!(f.is_empty());
        assert_eq!(body, b"hello world\r\nsecond: line\r\n");
        // A leading mbox From line goes; a non-field line ends the header section.
        let (f, body) = split_headers(b"From a@b Mon Dec  7\r\nSubject: s\r\nplain text\r\n");
        assert_eq!(f.len(), 1);
        assert_eq!(body, b"plain text\r\n");
    }

    #[test]
    fn message_reading() {
        let m = read_message(&mut &b"Subject: x\n\nline\n.\nafter\n"[..], true, 1000).unwrap();
        assert_eq!(m, b"Subject: x\r\n\r\nline\r\n");
        let m = read_message(&mut &b"Subject: x\n\nline\n.\nafter\n"[..], false, 1000).unwrap();
        assert_eq!(m, b"Subject: x\r\n\r\nline\r\n.\r\nafter\r\n");
        assert!(read_message(&mut &[b'x'; 2000][..], false, 1000).is_err());
    }
}
