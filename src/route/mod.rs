//! The in-memory route trie and the per-recipient routing decision (DESIGN.md §4.2,
//! §5.2; reference/zmailer.md §1.3).
//!
//! Lookup for `a.b.c`: the exact key `a.b.c`, then `.a.b.c`, `.b.c`, `.c`, then the
//! default `.`. The trie is keyed by labels from the right, so one walk finds the
//! exact entry and the longest suffix entry. Nothing here looks anything up in DNS:
//! routing uses only the files.

use std::collections::{HashMap, HashSet};

pub mod file;
pub mod names;

use crate::smtp::reply::Reply;
use crate::vocab::{Destination, Domain, Mailbox, Target};
use file::{Host, RouteEntry, RouteKey, RouteValue};
use names::{AliasTarget, Aliases};

/// A route entry as stored in the trie: its value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The value.
    pub value: RouteValue,
    /// Its line in the routes file.
    pub line: usize,
}

/// Which key matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// The exact name.
    Exact,
    /// A `.suffix` key.
    Suffix,
    /// The `.` default.
    Default,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    exact: Option<Route>,
    suffix: Option<Route>,
}

/// Routes keyed by reversed domain labels.
#[derive(Debug, Default)]
pub struct RouteTrie {
    root: Node,
    default: Option<Route>,
    len: usize,
}

impl RouteTrie {
    /// Builds the trie; for a key given twice the first entry wins.
    pub fn new(entries: Vec<RouteEntry>) -> RouteTrie {
        let mut t = RouteTrie::default();
        for e in entries {
            let route = Route {
                value: e.value,
                line: e.line,
            };
            let slot = match &e.key {
                RouteKey::Default => &mut t.default,
                RouteKey::Exact(d) => &mut t.node_mut(d).exact,
                RouteKey::Suffix(d) => &mut t.node_mut(d).suffix,
            };
            if slot.is_none() {
                *slot = Some(route);
                t.len += 1;
            }
        }
        t
    }

    fn node_mut(&mut self, d: &Domain) -> &mut Node {
        let mut node = &mut self.root;
        for label in d.as_str().rsplit('.') {
            node = node.children.entry(label.into()).or_default();
        }
        node
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry: its key (`None` for the default) and value.
    pub fn values(&self) -> Vec<(Option<Domain>, RouteValue)> {
        fn walk(n: &Node, labels: &mut Vec<String>, out: &mut Vec<(Option<Domain>, RouteValue)>) {
            let key = || {
                let mut l = labels.clone();
                l.reverse();
                Domain::parse(&l.join(".")).ok()
            };
            for r in [&n.exact, &n.suffix].into_iter().flatten() {
                out.push((key(), r.value.clone()));
            }
            for (label, child) in &n.children {
                labels.push(label.to_string());
                walk(child, labels, out);
                labels.pop();
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut Vec::new(), &mut out);
        if let Some(d) = &self.default {
            out.push((None, d.value.clone()));
        }
        out
    }

    /// Finds the route for `domain` in ZMailer's order.
    pub fn lookup(&self, domain: &Domain) -> Option<(MatchKind, &Route)> {
        let mut node = &self.root;
        let mut best: Option<&Route> = None;
        let mut complete = true;
        for label in domain.as_str().rsplit('.') {
            match node.children.get(label) {
                Some(n) => {
                    node = n;
                    if let Some(r) = &n.suffix {
                        best = Some(r);
                    }
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            if let Some(r) = &node.exact {
                return Some((MatchKind::Exact, r));
            }
        }
        if let Some(r) = best {
            return Some((MatchKind::Suffix, r));
        }
        self.default.as_ref().map(|r| (MatchKind::Default, r))
    }
}

/// The outcome of routing one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Deliver locally to this user (lower case, unquoted).
    Local(String),
    /// Queue for `channel!host`.
    Remote {
        /// The channel.
        channel: String,
        /// The next hop as text (`mail.client.dom`, `[192.0.2.1]:2526`).
        host: String,
    },
    /// Refuse at RCPT time with this reply.
    Refuse(Reply),
}

/// A decision with the reason an operator reads in `etrnd route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// What to do.
    pub decision: Decision,
    /// Why, in words.
    pub why: String,
}

/// Everything routing needs, built from the configuration files.
#[derive(Debug)]
pub struct Router {
    /// The route trie.
    pub trie: RouteTrie,
    /// Our local domains (`db/localnames` plus `HOSTNAME`).
    pub localnames: HashSet<Domain>,
    /// The aliases.
    pub aliases: Aliases,
    /// Whether unrouted domains go to `smtp!<domain>` (`PROTOCOLS=routes smtp`).
    pub protocols_smtp: bool,
    /// The system's accounts, as of the last load (never a lookup per RCPT).
    pub accounts: crate::accounts::Accounts,
}

/// Users that always exist (RFC 5321 §4.5.1; RFC 3834 bounce sender).
const ALWAYS_LOCAL: [&str; 2] = ["postmaster", "mailer-daemon"];

/// How deep aliases may nest.
pub const MAX_ALIAS_DEPTH: usize = 10;
/// Most destinations one local name may expand to.
pub const MAX_ALIAS_TARGETS: usize = 1000;

impl Router {
    /// Whether `user` is a valid local recipient: postmaster, an alias or a system
    /// account.
    pub fn local_user_exists(&self, user: &str) -> bool {
        ALWAYS_LOCAL.contains(&user)
            || self.aliases.contains_key(user)
            || self.accounts.contains(user)
    }

    /// Expands a local name through the aliases into final destinations: system
    /// accounts (their mailboxes) and remote addresses (routed as for a trusted
    /// client). Nested aliases are followed to [`MAX_ALIAS_DEPTH`]; a name met again
    /// is a loop and is delivered to its own mailbox if it is an account, else
    /// dropped. `postmaster` without an alias is root's, `mailer-daemon` postmaster's.
    pub fn expand(&self, user: &str) -> Result<Vec<Target>, String> {
        let mut out: Vec<Target> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut problems = Vec::new();
        self.expand_into(user, 0, &mut seen, &mut out, &mut problems);
        for p in &problems {
            log::warn!("aliases expand user={user} problem=\"{p}\"");
        }
        if out.is_empty() {
            return Err(match problems.first() {
                Some(p) => format!("alias {user} expands to nothing deliverable: {p}"),
                None => format!("no local user or alias '{user}'"),
            });
        }
        Ok(out)
    }

    fn expand_into(
        &self,
        name: &str,
        depth: usize,
        seen: &mut HashSet<String>,
        out: &mut Vec<Target>,
        problems: &mut Vec<String>,
    ) {
        let push = |out: &mut Vec<Target>, d: Destination| {
            let t = Target::to(d);
            if !out.contains(&t) && out.len() < MAX_ALIAS_TARGETS {
                out.push(t);
            }
        };
        if depth > MAX_ALIAS_DEPTH {
            problems.push(format!(
                "aliases nest deeper than {MAX_ALIAS_DEPTH} at {name}"
            ));
            return;
        }
        if !seen.insert(name.to_string()) {
            // A loop (or "user: user, …"): the name's own mailbox, if it has one.
            if self.accounts.contains(name) {
                push(out, Destination::Local(name.to_string()));
            } else {
                problems.push(format!("alias loop at {name}"));
            }
            return;
        }
        let Some(targets) = self.aliases.get(name) else {
            match name {
                "postmaster" => self.expand_into("root", depth + 1, seen, out, problems),
                "mailer-daemon" => self.expand_into("postmaster", depth + 1, seen, out, problems),
                _ if self.accounts.contains(name) => {
                    push(out, Destination::Local(name.to_string()))
                }
                _ => problems.push(format!("no account or alias '{name}'")),
            }
            return;
        };
        for t in targets {
            match t {
                AliasTarget::Local(u) => self.expand_into(u, depth + 1, seen, out, problems),
                AliasTarget::Address(m) => match self.route(m, true).decision {
                    Decision::Local(u) => self.expand_into(&u, depth + 1, seen, out, problems),
                    // The next hop is given the address the alias names.
                    Decision::Remote { channel, host } => {
                        let t = Target {
                            dest: Destination::Remote { channel, host },
                            address: Some(m.clone()),
                        };
                        if !out.contains(&t) && out.len() < MAX_ALIAS_TARGETS {
                            out.push(t);
                        }
                    }
                    Decision::Refuse(r) => problems.push(format!("{m}: {r}")),
                },
                // Special local targets: the local channel tells them from users by
                // their first character, which no user name has.
                AliasTarget::Discard => push(out, Destination::Local("/dev/null".into())),
                AliasTarget::File { path, .. } => push(out, Destination::Local(path.clone())),
                AliasTarget::Command { cmd, .. } => {
                    push(out, Destination::Local(format!("|{cmd}")))
                }
                AliasTarget::Include(p) => problems.push(format!(":include:{p} was not read")),
            }
        }
    }

    /// Routes and expands one address into its destinations (local submission,
    /// bounces): `Err` says why nothing is deliverable.
    pub fn destinations(&self, m: &Mailbox, trusted: bool) -> Result<Vec<Target>, String> {
        let routed = self.route(m, trusted);
        match routed.decision {
            Decision::Local(u) => self.expand(&u),
            Decision::Remote { channel, host } => {
                Ok(vec![Target::to(Destination::Remote { channel, host })])
            }
            Decision::Refuse(r) => Err(format!("{r} ({})", routed.why)),
        }
    }

    fn local(&self, rcpt: &Mailbox, why: String) -> Routed {
        // Case folds as the aliases file's names do (ASCII and UTF-8 alike).
        let user = rcpt.local_unquoted().to_lowercase();
        if self.local_user_exists(&user) {
            Routed {
                decision: Decision::Local(user.clone()),
                why: format!("{why}: local user '{user}'"),
            }
        } else {
            Routed {
                decision: Decision::Refuse(Reply::UNKNOWN_USER),
                why: format!("{why}: no local user, alias or account '{user}'"),
            }
        }
    }

    /// Routes one recipient. `trusted`: the client is in `MYNETWORKS` and may relay.
    pub fn route(&self, rcpt: &Mailbox, trusted: bool) -> Routed {
        let Some(domain) = rcpt.domain() else {
            return self.local(rcpt, "bare postmaster".into());
        };
        if self.localnames.contains(domain) {
            return self.local(rcpt, format!("{domain} is in localnames"));
        }
        let refuse = |reply: Reply, why: String| Routed {
            decision: Decision::Refuse(reply),
            why,
        };
        let found = self
            .trie
            .lookup(domain)
            .filter(|(_, r)| r.value != RouteValue::Ignore);
        let (kind, channel, host, why) = match found {
            Some((kind, route)) => {
                let why = format!("routes line {} ({:?} match)", route.line, kind);
                match &route.value {
                    RouteValue::Local => return self.local(rcpt, why),
                    RouteValue::Error(form) => {
                        return refuse(Reply::error_route(form), format!("{why}: error!{form}"))
                    }
                    RouteValue::Ignore => unreachable!("filtered above"),
                    RouteValue::Channel { channel, host } => {
                        let host = match host {
                            Host::RecipientDomain => domain.to_string(),
                            h => h.to_string(),
                        };
                        (kind, channel.clone(), host, why)
                    }
                }
            }
            None if self.protocols_smtp => (
                MatchKind::Default,
                "smtp".to_string(),
                domain.to_string(),
                "no route; PROTOCOLS has smtp".to_string(),
            ),
            None if trusted => {
                return refuse(Reply::NO_ROUTE, format!("no route for {domain}"));
            }
            None => {
                return refuse(
                    Reply::RELAY_DENIED,
                    format!("no route for {domain}, client may not relay"),
                )
            }
        };
        if kind == MatchKind::Default && !trusted {
            return refuse(
                Reply::RELAY_DENIED,
                format!("{why}: only the default route matches, client may not relay"),
            );
        }
        Routed {
            why: format!("{why}: {channel}!{host}"),
            decision: Decision::Remote { channel, host },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::routes;
    use std::path::Path;

    fn trie(text: &str) -> RouteTrie {
        RouteTrie::new(routes::parse(Path::new("routes"), text).unwrap())
    }

    fn look(t: &RouteTrie, d: &str) -> Option<(MatchKind, String)> {
        t.lookup(&Domain::parse(d).unwrap())
            .map(|(k, r)| (k, r.value.to_string()))
    }

    #[test]
    fn zmailer_lookup_order() {
        let t = trie(
            "foo.bar.edu smtp!exact\n.foo.bar.edu smtp!dotfull\n.bar.edu smtp!dotbar\n\
             .edu smtp!dotedu\n. smtp!default\n",
        );
        assert_eq!(
            look(&t, "foo.bar.edu"),
            Some((MatchKind::Exact, "smtp!exact".into()))
        );
        assert_eq!(
            look(&t, "x.foo.bar.edu"),
            Some((MatchKind::Suffix, "smtp!dotfull".into()))
        );
        assert_eq!(
            look(&t, "baz.bar.edu"),
            Some((MatchKind::Suffix, "smtp!dotbar".into()))
        );
        assert_eq!(
            look(&t, "bar.edu"),
            Some((MatchKind::Suffix, "smtp!dotbar".into()))
        );
        assert_eq!(
            look(&t, "other.edu"),
            Some((MatchKind::Suffix, "smtp!dotedu".into()))
        );
        assert_eq!(
            look(&t, "example.com"),
            Some((MatchKind::Default, "smtp!default".into()))
        );
    }

    #[test]
    fn exact_key_does_not_match_subdomains() {
        let t = trie("client.dom smtp!x\n");
        assert_eq!(look(&t, "client.dom").unwrap().0, MatchKind::Exact);
        assert_eq!(look(&t, "a.client.dom"), None);
    }

    #[test]
    fn first_duplicate_wins_and_case_is_ignored() {
        let t = trie(".Client.Dom smtp!first\n.client.dom smtp!second\n");
        assert_eq!(
            look(&t, "MAIL.client.dom".to_lowercase().as_str())
                .unwrap()
                .1,
            "smtp!first"
        );
        assert_eq!(t.len(), 1);
    }

    fn router(routes_text: &str, smtp: bool) -> Router {
        let mut aliases = Aliases::new();
        aliases.insert("alice".into(), vec![AliasTarget::Local("root".into())]);
        Router {
            trie: trie(routes_text),
            localnames: [Domain::parse("ours.example").unwrap()]
                .into_iter()
                .collect(),
            aliases,
            protocols_smtp: smtp,
            accounts: crate::accounts::Accounts::snapshot(),
        }
    }

    fn decide(r: &Router, addr: &str, trusted: bool) -> Decision {
        let m = crate::vocab::parse_path(&format!("<{addr}>"))
            .unwrap()
            .unwrap();
        r.route(&m, trusted).decision
    }

    #[test]
    fn hub_and_client_decisions() {
        let hub = router(".client.dom smtp-etrn!mail.client.dom\n", false);
        let remote = Decision::Remote {
            channel: "smtp-etrn".into(),
            host: "mail.client.dom".into(),
        };
        assert_eq!(decide(&hub, "u@client.dom", false), remote);
        assert_eq!(decide(&hub, "u@sub.client.dom", false), remote);
        assert_eq!(
            decide(&hub, "u@victim.example", false),
            Decision::Refuse(Reply::RELAY_DENIED)
        );
        assert_eq!(
            decide(&hub, "u@victim.example", true),
            Decision::Refuse(Reply::NO_ROUTE)
        );

        let client = router(
            ".client.dom error!database\n. smtp-etrn!mail.isp.dom\n",
            false,
        );
        assert_eq!(
            decide(&client, "u@x.client.dom", true),
            Decision::Refuse(Reply::error_route("database"))
        );
        assert_eq!(
            decide(&client, "u@far.example", true),
            Decision::Remote {
                channel: "smtp-etrn".into(),
                host: "mail.isp.dom".into()
            }
        );
        assert_eq!(
            decide(&client, "u@far.example", false),
            Decision::Refuse(Reply::RELAY_DENIED)
        );
    }

    #[test]
    fn local_users() {
        let r = router("", false);
        assert_eq!(
            decide(&r, "alice@ours.example", false),
            Decision::Local("alice".into())
        );
        assert_eq!(
            decide(&r, "ALICE@OURS.EXAMPLE", false),
            Decision::Local("alice".into())
        );
        assert_eq!(
            decide(&r, "postmaster", false),
            Decision::Local("postmaster".into())
        );
        assert_eq!(
            decide(&r, "root@ours.example", false),
            Decision::Local("root".into())
        );
        assert_eq!(
            decide(&r, "nosuchuser-xyz@ours.example", false),
            Decision::Refuse(Reply::UNKNOWN_USER)
        );
    }

    #[test]
    fn alias_expansion_nested_remote_and_loops() {
        use crate::config::names::parse_aliases;
        let mut r = router(".far.example smtp!mx.far.example\n", false);
        r.aliases = parse_aliases(
            Path::new("aliases"),
            "staff: alice, team\nteam: root, bob@far.example\nalice: root\n\
             loop1: loop2\nloop2: loop1\nself: root, self\nbad: nobody-xyz\n\
             deep0: deep1\ndeep1: deep2\ndeep2: deep3\ndeep3: deep4\ndeep4: deep5\n\
             deep5: deep6\ndeep6: deep7\ndeep7: deep8\ndeep8: deep9\ndeep9: deep10\n\
             deep10: deep11\ndeep11: root\n",
        )
        .unwrap();
        let staff = r.expand("staff").unwrap();
        let root = || vec![Target::to(Destination::Local("root".into()))];
        assert_eq!(
            staff,
            vec![
                Target::to(Destination::Local("root".into())),
                Target {
                    dest: Destination::Remote {
                        channel: "smtp".into(),
                        host: "mx.far.example".into()
                    },
                    // The address the alias names goes to the next hop.
                    address: Some(Mailbox::parse("bob@far.example").unwrap()),
                },
            ]
        );
        assert!(
            r.expand("loop1").is_err(),
            "a loop with no account delivers nowhere"
        );
        assert_eq!(r.expand("self").unwrap(), root());
        assert!(r.expand("bad").is_err());
        assert!(r.expand("deep0").is_err(), "too deep");
        assert_eq!(r.expand("postmaster").unwrap(), root());
        assert_eq!(r.expand("mailer-daemon").unwrap(), root());
    }

    #[test]
    fn relay_tricks_from_outside_never_relay() {
        let r = router(
            ".client.dom smtp-etrn!mail.client.dom\n. smtp!smarthost\n",
            true,
        );
        for addr in [
            "user%victim.example@ours.example",
            "victim.example!user@ours.example",
            "\"user@victim.example\"@ours.example",
            "user@[198.51.100.1]",
            "user%victim.example@[192.0.2.25]",
            "@ours.example,@x.example:u@victim.example",
            "u@victim.example",
            "u@client.dom.victim.example",
        ] {
            match decide(&r, addr, false) {
                Decision::Remote { .. } => panic!("{addr} relays"),
                Decision::Local(u) => panic!("{addr} is local {u}"),
                Decision::Refuse(_) => {}
            }
        }
    }

    #[test]
    fn smtp_protocol_fallback_only_for_trusted() {
        let r = router("", true);
        assert_eq!(
            decide(&r, "u@far.example", true),
            Decision::Remote {
                channel: "smtp".into(),
                host: "far.example".into()
            }
        );
        assert_eq!(
            decide(&r, "u@far.example", false),
            Decision::Refuse(Reply::RELAY_DENIED)
        );
    }

    #[test]
    fn empty_host_takes_recipient_domain() {
        let r = router(".bar smtp-etrn!\n", false);
        assert_eq!(
            decide(&r, "u@a.bar", false),
            Decision::Remote {
                channel: "smtp-etrn".into(),
                host: "a.bar".into()
            }
        );
    }
}
