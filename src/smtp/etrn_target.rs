//! The ETRN argument (RFC 1985 §4): a node name, `@domain` (the domain and its
//! subdomains) or `#channel` (a local queue). Parsed strictly: the argument is only
//! ever compared with routing data, never used as a path, key or command.

use super::Domain;

/// What an ETRN asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtrnTarget {
    /// `ETRN name`: recipients whose route host or recipient domain is `name`.
    Node(Domain),
    /// `ETRN @domain`: the domain and all its subdomains.
    Subdomains(Domain),
    /// `ETRN #channel`: a whole channel.
    Channel(String),
}

impl std::fmt::Display for EtrnTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtrnTarget::Node(d) => write!(f, "{d}"),
            EtrnTarget::Subdomains(d) => write!(f, "@{d}"),
            EtrnTarget::Channel(c) => write!(f, "#{c}"),
        }
    }
}

impl EtrnTarget {
    /// Parses the text after `ETRN ` (one word; a trailing dot is ignored).
    pub fn parse(arg: &str) -> Option<EtrnTarget> {
        let a = arg.trim();
        if a.is_empty() || a.contains(char::is_whitespace) || a.len() > 255 {
            return None;
        }
        if let Some(c) = a.strip_prefix('#') {
            let ok = !c.is_empty()
                && c.len() <= 64
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && !c.starts_with('.')
                && !c.contains("..");
            return ok.then(|| EtrnTarget::Channel(c.to_ascii_lowercase()));
        }
        if let Some(d) = a.strip_prefix('@') {
            return Domain::parse_relaxed(d)
                .ok()
                .filter(|d| d.literal().is_none())
                .map(EtrnTarget::Subdomains);
        }
        Domain::parse_relaxed(a).ok().map(EtrnTarget::Node)
    }

    /// Whether a recipient of thread (`channel`, `host`) with domain `domain` is meant.
    pub fn matches(&self, channel: &str, host: &str, domain: &str) -> bool {
        // A bracketed route host (`[mail.isp.dom]:587`) is named by its name.
        let host = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => host,
        };
        match self {
            EtrnTarget::Node(d) => host == d.as_str() || domain == d.as_str(),
            EtrnTarget::Subdomains(d) => [host, domain]
                .iter()
                .any(|x| Domain::parse(x).is_ok_and(|x| x.is_within(d))),
            EtrnTarget::Channel(c) => channel == c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms_and_hostile_arguments() {
        let p = EtrnTarget::parse;
        assert_eq!(
            p("Client.Dom."),
            Some(EtrnTarget::Node(Domain::parse("client.dom").unwrap()))
        );
        assert_eq!(
            p("@client.dom"),
            Some(EtrnTarget::Subdomains(Domain::parse("client.dom").unwrap()))
        );
        assert_eq!(
            p("#smtp-etrn"),
            Some(EtrnTarget::Channel("smtp-etrn".into()))
        );
        for bad in [
            "",
            " ",
            "a..b",
            "../../etc",
            "x';--",
            "$(id)",
            "#",
            "#../x",
            "a b",
            "@",
            "@[1.2.3.4]",
            "#a/b",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        let t = EtrnTarget::parse("client.dom").unwrap();
        assert!(t.matches("smtp-etrn", "mail.client.dom", "client.dom"));
        assert!(t.matches("smtp-etrn", "client.dom", "sub.client.dom"));
        assert!(!t.matches("smtp-etrn", "mail.client.dom", "sub.client.dom"));
        let t = EtrnTarget::parse("mail.client.dom").unwrap();
        assert!(t.matches("smtp-etrn", "mail.client.dom", "sub.client.dom"));
        let t = EtrnTarget::parse("@client.dom").unwrap();
        assert!(t.matches("smtp", "x.y", "a.b.client.dom"));
        assert!(!t.matches("smtp", "x.y", "xclient.dom"));
        let t = EtrnTarget::parse("#smtp-etrn").unwrap();
        assert!(t.matches("smtp-etrn", "any", "any"));
        assert!(!t.matches("smtp", "any", "any"));
    }
}
