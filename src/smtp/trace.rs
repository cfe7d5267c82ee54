//! The `Received:` trace header we prepend to every message (RFC 5321 §4.4) and the
//! RFC 5322 §3.3 date it carries. Pure: the time is passed in.

use std::net::IpAddr;

pub use crate::vocab::date::{iso_date, rfc5322_date};

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
    /// TLS version and cipher, when the session used TLS.
    pub tls: Option<&'a str>,
    /// The ODMR provider, when we turned the connection around with ATRN.
    pub provider: Option<&'a str>,
}

/// Renders the `Received:` header, folded, ending in CR LF.
pub fn received(t: &TraceInfo<'_>) -> String {
    let literal = match t.client {
        IpAddr::V4(a) => format!("[{a}]"),
        IpAddr::V6(a) => format!("[IPv6:{a}]"),
    };
    let mut s = format!("Received: from {} ({})", t.helo, literal);
    if let Some(p) = t.provider {
        s.push_str(&format!("\r\n\t(ODMR provider {p}, turned around by ATRN)"));
    }
    if let Some(tls) = t.tls {
        s.push_str(&format!("\r\n\t(using {tls})"));
    }
    s.push_str(&format!(
        "\r\n\tby {} (etrnd) with {} id {}",
        t.hostname, t.protocol, t.id
    ));
    if let Some(r) = &t.single_rcpt {
        s.push_str(&format!("\r\n\tfor <{r}>"));
    }
    s.push_str(&format!("; {}\r\n", rfc5322_date(t.unix_time)));
    s
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
            tls: None,
            provider: None,
        });
        assert_eq!(
            h,
            "Received: from client.example ([192.0.2.1])\r\n\tby mx.example (etrnd) with ESMTP \
             id 0123456789abcdef\r\n\tfor <u@x.example>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
