//! The shared vocabulary: domains, mailboxes, destinations, address ranges, dates and
//! the one way peer text is made printable. A leaf: it imports nothing of ours, so
//! every other module can stand on it and be read after it.

pub mod address;
pub mod address_list;
pub mod cidr;
pub mod date;
pub mod dsn;
pub mod security;

pub use address::{
    bare_host, fmt_path, parse_path, parse_path_utf8, server_name, AddrError, Domain, Mailbox,
    ReversePath,
};
pub use cidr::{canonical, Cidr};
pub use security::{ListenKind, TlsLevel};

/// Longest peer string written to a log line.
pub const MAX_LOGGED: usize = 200;

/// An OS error as a reason a person reads: the system's text without Rust's
/// ` (os error N)` tail (`Connection refused`, as Postfix says it).
pub fn os_error(e: &std::io::Error) -> String {
    let t = e.to_string();
    match t.rfind(" (os error ") {
        Some(i) if t.ends_with(')') => t[..i].to_string(),
        _ => t,
    }
}

/// Makes a peer string safe to log: printable ASCII and printable UTF-8 (an
/// SMTPUTF8 address) as they are; control characters, invisible and
/// direction-changing characters and octets that are not UTF-8 as `\xNN`; quotes
/// escaped; the result capped at [`MAX_LOGGED`] octets, never inside a character.
pub fn sanitize(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED));
    for chunk in s.utf8_chunks() {
        let bad = chunk.invalid().iter().map(|&b| (None, b));
        let chars = chunk.valid().chars().map(|c| (Some(c), 0u8));
        for (c, b) in chars.chain(bad) {
            if out.len() >= MAX_LOGGED {
                out.push_str("...");
                return out;
            }
            match c {
                Some(c @ ('"' | '\\')) => {
                    out.push('\\');
                    out.push(c);
                }
                Some(c @ ' '..='~') => out.push(c),
                Some(c) if !c.is_ascii() && !hidden(c) => out.push(c),
                Some(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                None => out.push_str(&format!("\\x{b:02x}")),
            }
        }
    }
    out
}

/// Characters that print as nothing or change how what follows reads: controls,
/// zero-width and direction marks and overrides, the byte-order mark.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

/// Every octet outside `!`..`~`, and `escape` and the octets of `also`, as
/// `<escape>XX` (upper-case hex): the spool's `%XX` fields, SMTP's xtext (`+XX`).
pub fn hex_escape(s: &str, escape: u8, also: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != escape && !also.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("{}{b:02X}", escape as char));
        }
    }
    out
}

/// What a recipient address becomes once routed and expanded: where it goes, and,
/// for an alias naming an address elsewhere (`fwd: someone@remote.example`), the
/// address the next hop is given instead of the one received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where it goes.
    pub dest: Destination,
    /// The address to give the next hop, when not the one received.
    pub address: Option<Mailbox>,
}

impl Target {
    /// A destination for the address as it came.
    pub fn to(dest: Destination) -> Target {
        Target {
            dest,
            address: None,
        }
    }

    /// The recipient this makes of `received`.
    pub fn address_for<'a>(&'a self, received: &'a Mailbox) -> &'a Mailbox {
        self.address.as_ref().unwrap_or(received)
    }
}

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Local delivery to this user.
    Local(String),
    /// Through `channel` to `host`.
    Remote {
        /// scheduler.conf channel.
        channel: String,
        /// Next hop.
        host: String,
    },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Local(u) => write!(f, "local!{u}"),
            Destination::Remote { channel, host } => write!(f, "{channel}!{host}"),
        }
    }
}
