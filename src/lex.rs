//! The line reader shared by every configuration file: numbered lines with `#`
//! comments and blank lines removed, and the `file:line: message` error type.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem a user can act on, printed like a compiler error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number, or 0 when the problem is the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at `path:line`.
    pub fn at(path: &Path, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// One meaningful line: its number, whether it began with white space (a
/// continuation in the aliases file), and its text without comment and trailing
/// white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number.
    pub no: usize,
    /// Whether the raw line started with a space or tab.
    pub indented: bool,
    /// The text, trimmed at both ends.
    pub text: &'a str,
}

/// Splits a `[host]:port` / `[host]` / `host` key (of `db/authinfo` and
/// `db/tls_policy`): the host without brackets and the port, if one was named
/// (1 to 65535). `None` for an unterminated bracket or a bad port.
pub fn bracketed_key(k: &str) -> Option<(&str, Option<u16>)> {
    let Some(rest) = k.strip_prefix('[') else {
        return Some((k, None));
    };
    let (h, after) = rest.split_once(']')?;
    let port = match after {
        "" => None,
        p => Some(
            p.strip_prefix(':')?
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)?,
        ),
    };
    Some((h, port))
}

/// Splits `text` into meaningful lines. A `#` starts a comment at the start of a line
/// or after white space, outside double quotes (so `a#b` and `"x # y"` keep theirs).
pub fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let mut end = raw.len();
        let mut in_quote = false;
        let mut prev_space = true;
        let bytes = raw.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            match bytes[j] {
                b'\\' if in_quote => j += 1,
                b'"' => in_quote = !in_quote,
                b'#' if !in_quote && prev_space => {
                    end = j;
                    break;
                }
                _ => {}
            }
            prev_space = j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t');
            j += 1;
        }
        let text = raw[..end].trim();
        if text.is_empty() {
            continue;
        }
        out.push(Line {
            no: i + 1,
            indented: raw.starts_with([' ', '\t']),
            text,
        });
    }
    out
}

/// Reads a file, mapping a failure to a `ConfigError` naming it.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::at(path, 0, format!("{e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ConfigError::at(path, line, "not valid UTF-8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blanks() {
        let got = lines("# head\n\nA=1 # tail\n  B=\"x # y\"\nC=a#b\n\t# only\n");
        let texts: Vec<_> = got.iter().map(|l| (l.no, l.indented, l.text)).collect();
        assert_eq!(
            texts,
            vec![
                (3, false, "A=1"),
                (4, true, "B=\"x # y\""),
                (5, false, "C=a#b")
            ]
        );
    }

    #[test]
    fn error_display() {
        let e = ConfigError::at(Path::new("etc/x"), 4, "bad");
        assert_eq!(e.to_string(), "etc/x:4: bad");
    }
}
