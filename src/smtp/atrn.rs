//! The ATRN argument (RFC 2645 §5.2.1): nothing, or one space and a comma-separated
//! list of domains with no whitespace around the commas, each domain two or more
//! LDH labels (a label starts with a letter or digit and does not end with a hyphen;
//! no address literal, no trailing dot, no single label). Parsed strictly and
//! bounded: the list is only ever compared with the identity's entitlement and the
//! recipients' domains, never used as a path or key.

/// The ODMR port (RFC 2645 §4), `etrnd atrn`'s default.
pub const ODMR_PORT: u16 = 366;

/// Most domains one ATRN may list (the command line bounds it anyway; fetchmail cuts
/// its list to its buffer, Exim's customer to four domain names' length).
pub const MAX_ATRN_DOMAINS: usize = 64;

/// Why an ATRN list is refused (the 501 text says which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// Not `domain[,domain…]`.
    Syntax,
    /// More than [`MAX_ATRN_DOMAINS`].
    TooMany,
}

/// Whether `d` is a domain of the RFC 2645 grammar (case is ignored).
fn is_domain(d: &str) -> bool {
    if d.len() > 253 {
        return false;
    }
    let mut labels = 0;
    for label in d.split('.') {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1] != b'-'
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
        if !ok {
            return false;
        }
        labels += 1;
    }
    labels >= 2
}

/// Parses what follows `ATRN` (the verb's separating space already removed): the
/// domains in lower case, duplicates dropped, order kept; empty for a bare `ATRN`.
pub fn parse_list(arg: &str) -> Result<Vec<String>, ListError> {
    if arg.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = Vec::new();
    for d in arg.split(',') {
        if !is_domain(d) {
            return Err(ListError::Syntax);
        }
        let d = d.to_ascii_lowercase();
        if !out.contains(&d) {
            if out.len() >= MAX_ATRN_DOMAINS {
                return Err(ListError::TooMany);
            }
            out.push(d);
        }
    }
    Ok(out)
}

/// Whether a recipient domain falls under a requested domain: the domain itself or
/// one of its subdomains (`ATRN client.dom` takes `mail.client.dom` too, as ETRN does
/// with a route for `.client.dom`; entitlement is checked per recipient on top).
pub fn covers(requested: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    domain.eq_ignore_ascii_case(requested)
        || (domain.len() > requested.len()
            && domain.as_bytes()[domain.len() - requested.len() - 1] == b'.'
            && domain[domain.len() - requested.len()..].eq_ignore_ascii_case(requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_the_rfc_grammar_parse_in_lower_case() {
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(
            parse_list("Example.ORG"),
            Ok(vec!["example.org".to_string()])
        );
        assert_eq!(
            parse_list("a.test,b.test,a.test"),
            Ok(vec!["a.test".to_string(), "b.test".to_string()])
        );
        assert_eq!(
            parse_list("1a.x-y.test"),
            Ok(vec!["1a.x-y.test".to_string()])
        );
    }

    #[test]
    fn everything_else_is_a_syntax_error() {
        for bad in [
            "a",
            "a.test,",
            ",a.test",
            "a.test, b.test",
            "a.test ,b.test",
            "a.test.",
            "[192.0.2.1]",
            "-a.test",
            "a-.test",
            "a..test",
            "a_b.test",
            "a.test;b.test",
            " a.test",
            "a.test\tb.test",
            "@a.test",
            "#smtp",
        ] {
            assert_eq!(parse_list(bad), Err(ListError::Syntax), "{bad:?}");
        }
        let long = format!("{}.test", "a".repeat(64));
        assert_eq!(parse_list(&long), Err(ListError::Syntax));
    }

    #[test]
    fn the_number_of_domains_is_bounded() {
        let list: Vec<String> = (0..=MAX_ATRN_DOMAINS)
            .map(|i| format!("d{i}.test"))
            .collect();
        assert_eq!(parse_list(&list.join(",")), Err(ListError::TooMany));
        assert_eq!(
            parse_list(&list[..MAX_ATRN_DOMAINS].join(",")).map(|v| v.len()),
            Ok(MAX_ATRN_DOMAINS)
        );
    }

    #[test]
    fn a_requested_domain_covers_itself_and_its_subdomains_only() {
        assert!(covers("client.dom", "client.dom"));
        assert!(covers("client.dom", "Mail.Client.Dom"));
        assert!(covers("client.dom", "client.dom."));
        assert!(!covers("client.dom", "xclient.dom"));
        assert!(!covers("client.dom", "dom"));
        assert!(!covers("mail.client.dom", "client.dom"));
    }
}
