//! The `Received:` trace header we prepend to every message (RFC 5321 §4.4) and the
//! RFC 5322 §3.3 date it carries. Pure: the time is passed in.

use std::net::IpAddr;

/// What the trace header says about the session.
pub struct TraceInfo<'a> {
    /// The name the client gave in HELO/EHLO (already checked to be a domain).
    pub helo: &'a str,
    /// The client's address.
    pub client: IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// `ESMTP` or `SMTP` (RFC 3848 `with` values).
    pub protocol: &'a str,
    /// Queue id of the message.
    pub id: &'a str,
    /// The recipient, when there is exactly one.
    pub single_rcpt: Option<String>,
    /// Seconds since the epoch.
    pub unix_time: u64,
}

/// Renders the `Received:` header, folded, ending in CR LF.
pub fn received(t: &TraceInfo<'_>) -> String {
    let literal = match t.client {
        IpAddr::V4(a) => format!("[{a}]"),
        IpAddr::V6(a) => format!("[IPv6:{a}]"),
    };
    let mut s = format!(
        "Received: from {} ({})\r\n\tby {} (etrnd) with {} id {}",
        t.helo, literal, t.hostname, t.protocol, t.id
    );
    if let Some(r) = &t.single_rcpt {
        s.push_str(&format!("\r\n\tfor <{r}>"));
    }
    s.push_str(&format!("; {}\r\n", rfc5322_date(t.unix_time)));
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `Sat, 28 Nov 2026 13:45:51 +0000` for a Unix time (always UTC: no time zone
/// database is read).
pub fn rfc5322_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `2026-11-28 13:45:51` (UTC), for listings.
pub fn iso_date(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    let secs = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_873_551),
            "Sat, 28 Nov 2026 13:45:51 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(iso_date(1_795_873_551), "2026-11-28 13:45:51");
    }

    #[test]
    fn received_header() {
        let h = received(&TraceInfo {
            helo: "client.example",
            client: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example",
            protocol: "ESMTP",
            id: "0123456789abcdef",
            single_rcpt: Some("u@x.example".into()),
            unix_time: 0,
        });
        assert_eq!(
            h,
            "Received: from client.example ([192.0.2.1])\r\n\tby mx.example (etrnd) with ESMTP \
             id 0123456789abcdef\r\n\tfor <u@x.example>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
