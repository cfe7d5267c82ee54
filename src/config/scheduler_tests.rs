//! Tests of the scheduler.conf parser, its clause matching and the transport commands.
use super::*;

fn parse(t: &str) -> Result<SchedulerConf, Vec<String>> {
    SchedulerConf::parse(Path::new("scheduler.conf"), t, "/var/log/etrnd")
        .map_err(|e| e.iter().map(|e| e.to_string()).collect())
}

#[test]
fn builtin_parses_and_matches() {
    let c = parse(BUILTIN).unwrap();
    let (_, etrn) = c.clause_for("smtp-etrn", "mail.client.dom").unwrap();
    assert!(etrn.params.queueonly);
    assert_eq!(etrn.params.interval, Duration::from_secs(3600));
    assert_eq!(etrn.params.retries, vec![12]);
    assert_eq!(
        etrn.params.expiry,
        Some(Duration::from_secs(5 * 86400)),
        "from */*"
    );
    assert_eq!(etrn.params.maxring, 20);
    let (_, smtp) = c.clause_for("smtp", "x.example").unwrap();
    assert_eq!(smtp.selector, "smtp/*");
    assert!(!smtp.params.queueonly);
    assert_eq!(smtp.params.retries, vec![1, 1, 2, 3, 5, 8, 13, 21, 34]);
    assert!(matches!(
        &c.clause_for("smtpx", "h").unwrap().1.params.command,
        Some((Transport::Smtp(o), _)) if o.no_mx
    ));
    assert!(c.clause_for("nosuch", "h").is_none());
    // No catch-all: channels whose transports etrnd lacks are not sent as SMTP.
    for chan in ["smtp-tls", "smtp-lmtp", "uucp", "usenet", "bitbucket"] {
        assert!(c.check_destination(chan, "h").is_err(), "{chan}");
    }
    assert!(matches!(
        c.check_destination("smtp77", "h"),
        Ok(Transport::Smtp(SmtpOptions {
            eight_bit: EightBit::ForbidNoEsmtp,
            ..
        }))
    ));
}

#[test]
fn seed_clause_with_logdir() {
    let c = parse(
        "smtp-etrn/*\n\tmaxchannel=199\n\tmaxring=20\n\tinterval=1h\n\tretries=\"12\"\n\
         \tqueueonly\n\tcommand=\"smtp -s -c $channel -l ${LOGDIR}/smtp-etrn\"\n",
    )
    .unwrap();
    let p = &c.clauses[0].params;
    assert_eq!(
        p.command.as_ref().unwrap().0,
        Transport::Smtp(SmtpOptions {
            channel: Some("$channel".into()),
            log: Some("/var/log/etrnd/smtp-etrn".into()),
            ..SmtpOptions::default()
        })
    );
}

fn smtp(cmd: &str) -> Result<SmtpOptions, String> {
    match parse_command(cmd, "/log")? {
        Transport::Smtp(o) => Ok(o),
        t => panic!("{t:?}"),
    }
}

#[test]
fn smtp_flags_as_zmailer_getopt_takes_them() {
    let o = smtp("smtp -p 30041 -h Other.Name").unwrap();
    assert_eq!(
        (o.port, o.helo.as_deref()),
        (Some(30041), Some("other.name"))
    );
    let o = smtp("smtp -8sl ${LOGDIR}/smtp").unwrap();
    assert_eq!(o.eight_bit, EightBit::Allow);
    assert_eq!(o.log.as_deref(), Some("/log/smtp"));
    let o = smtp("smtp -p25 -cfoo -xs $host").unwrap();
    assert_eq!(
        (o.port, o.channel.as_deref(), o.no_mx),
        (Some(25), Some("foo"), true)
    );
    assert_eq!(smtp("smtp -7").unwrap().eight_bit, EightBit::Forbid);
    assert_eq!(
        smtp("smtp -77 -x").unwrap().eight_bit,
        EightBit::ForbidNoEsmtp
    );
    assert_eq!(
        smtp("smtp -7 -7").unwrap().eight_bit,
        EightBit::ForbidNoEsmtp
    );
    assert_eq!(smtp("smtp -x -w 1200 -s").unwrap().sndbuf, Some(1200));
    assert!(smtp("MAILBIN=/x smtp -s").is_ok(), "environment words");
    assert!(
        smtp("smtp -xs8MF [1.2.3.4]").unwrap().lmtp,
        "bundled, -F last"
    );
    for (bad, why) in [
        ("smtp -M -x -F lmtp.example", "-F"),
        ("smtp -S /etc/tls.conf", "-S"),
        ("smtp -1", "-1 is not supported"),
        ("smtp -q", "not an option"),
        ("smtp -p", "needs an argument"),
        ("smtp -p 0", "not a port"),
        ("smtp -p 70000", "not a port"),
        ("smtp -h bad..name", "-h"),
        ("smtp -w 5", "buffer size"),
        ("smtp somehost", "unexpected argument"),
        ("smtp -xs8F 1.2.3.4", "-F"),
    ] {
        let e = smtp(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert!(parse_command("mailbox -8", "/l").is_ok());
    assert!(parse_command("mailbox -x", "/l").is_err());
    assert!(parse_command("sm -8c $channel uucp", "/l")
        .unwrap_err()
        .contains("sm transport"));
}

#[test]
fn a_clause_without_command_takes_the_next_matching_command() {
    let c = parse(
        "smtpx/*.edu maxring=5\nother/* command=hold\n\
         smtpx/* maxring=9 command=\"smtp -x -s\"\n",
    )
    .unwrap();
    let (_, edu) = c.clause_for("smtpx", "mit.edu").unwrap();
    assert_eq!(edu.params.maxring, 5, "parameters from itself");
    assert_eq!(edu.line, 1);
    assert_eq!(edu.command_from, Some(("smtpx/*".to_string(), 3)));
    assert!(matches!(
        c.check_destination("smtpx", "mit.edu"),
        Ok(Transport::Smtp(o)) if o.no_mx
    ));
    let (_, other) = c.clause_for("smtpx", "x.com").unwrap();
    assert_eq!(other.params.maxring, 9);
    // Expansions share their file clause's ring.
    let rings: Vec<usize> = c.clauses.iter().map(|c| c.ring).collect();
    assert_eq!(rings[0], rings[1]);
    // Nothing later matches: the clause matches but has no transport.
    let c = parse("uucp/* maxchannel=5\nsmtp/* command=\"smtp\"\n").unwrap();
    let e = c
        .check_destination("uucp", "somehost")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'uucp/*' (line 1)") && e.contains("no command"),
        "{e}"
    );
    assert!(c
        .check_destination("nochan", "h")
        .unwrap_err()
        .to_string()
        .contains("no scheduler.conf clause matches nochan/h"));
}

#[test]
fn bare_selectors_share_the_next_clause_and_defaults_copy() {
    let c = parse("x/a\ny/b\n  maxthr=3\n*/* interval=10s queueonly\nz/* command=hold\n").unwrap();
    let of = |ch: &str, h: &str| c.clause_for(ch, h).unwrap().1.params.clone();
    assert_eq!(of("x", "a").maxthr, 3);
    assert_eq!(of("y", "b").maxthr, 3);
    assert_eq!(
        of("x", "a").interval,
        Duration::from_secs(3600),
        "before */*"
    );
    assert_eq!(of("z", "q").interval, Duration::from_secs(10));
    assert!(of("z", "q").queueonly, "flags are additive from */*");
}

#[test]
fn several_params_per_line_spaces_around_equals_and_case() {
    let c = parse("uucp/*  MAXCHANNEL = 5 command=\"hold\" Interval=90\n").unwrap();
    assert_eq!(c.clauses[0].params.maxchannel, 5);
    assert_eq!(c.clauses[0].params.interval, Duration::from_secs(90));
}

#[test]
fn quoted_continuation_and_escapes() {
    let c = parse("a/* retries=\"1 2 \\\n 3\" command=\"smtp -l \\\"x\\\"\"\n").unwrap();
    assert_eq!(c.clauses[0].params.retries, vec![1, 2, 3]);
}

#[test]
fn globs() {
    let g = |p: &str, s: &str| Glob(p.into()).matches(s);
    assert!(g("smtp*", "smtp-etrn"));
    assert!(g("*.{se,dk,is}", "mail.dk"));
    assert!(!g("*.{se,dk,is}", "mail.de"));
    assert!(g("[abc]x", "bx"));
    assert!(!g("[^abc]x", "bx"));
    assert!(g("a?c", "abc"));
    assert!(g("a\\*c", "a*c"));
    assert!(!g("a\\*c", "abc"));
    assert!(!g("Smtp", "smtp"), "case-sensitive");
}

#[test]
fn compound_intervals() {
    assert_eq!(parse_interval("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(
        parse_interval("1h5m20s").unwrap(),
        Duration::from_secs(3920)
    );
    assert_eq!(parse_interval("90").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_interval("5d").unwrap(), Duration::from_secs(432_000));
    assert!(parse_interval("5x").is_err());
    assert!(parse_interval("1h30").is_err());
    assert!(parse_interval("3650d").is_ok());
    assert!(parse_interval("3651d").is_err());
    assert!(parse_interval("18446744073709551615").is_err());
    assert!(parse_interval("99999999999999999999999d").is_err());
    assert!(parse_interval("h").is_err());
}

#[test]
fn errors_name_the_line() {
    let e = parse("a/*\n  retries=\"0 1\"\n  bogus=1\n  command=\"sendmail -t\"\n").unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("scheduler.conf:2:"));
    assert!(e[1].contains(":3: unknown keyword 'bogus'"));
    assert!(e[2].contains(":4: unknown transport program 'sendmail'"));
    let e = parse("  interval=1m\n").unwrap_err();
    assert!(e[0].contains("before any selector"));
    let e = parse("a/* command=\"smtp\n").unwrap_err();
    assert!(e[0].contains("missing closing quote"));
    let e = parse("a/* retries=\"\"\n").unwrap_err();
    assert!(e[0].contains("retries needs"));
}

#[test]
fn odd_white_space_never_stalls_the_tokenizer() {
    // Found by fuzzing: a vertical tab or NEL made no progress.
    let c = parse("a/*\u{b}maxthr=2\n").unwrap();
    assert_eq!(c.clauses.len(), 1);
    assert_eq!(c.clauses[0].params.maxthr, 2, "a vertical tab separates");
    let c = parse("a/* \u{85}\n").unwrap();
    assert_eq!(c.clauses[0].selector, "a/*", "NEL is white space");
    for t in ["\u{a0}x\n", "=\n", "a/* =\n"] {
        let _ = parse(t); // returns, either way
    }
}

#[test]
fn a_multibyte_character_where_param_would_end_is_a_selector() {
    // Found by fuzzing: slicing the first five octets cut "é" in half.
    let c = parse("PARA\u{e9}x\n").unwrap();
    assert_eq!(c.clauses[0].selector, "PARA\u{e9}x");
}

#[test]
fn param_lines_are_accepted() {
    let c = parse("PARAMauthfile = \"/x\"\nPARAMmailqsock=UNIX:/y\na/* maxthr=2\n").unwrap();
    assert_eq!(c.clauses.len(), 1);
}
