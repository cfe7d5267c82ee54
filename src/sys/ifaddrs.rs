//! The addresses of this machine's interfaces.

#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

/// Addresses of the local interfaces, for recognising our own MX. On Linux they
/// are read without netlink: the IPv4 ones with `SIOCGIFCONF`, the IPv6 ones from
/// `/proc/net/if_inet6`. musl's `getifaddrs` walks netlink attributes without
/// checking their length, and spins for ever on one of length 0 — which qemu-user's
/// big-endian translation hands it, so a MIPS router's daemon could not be tested.
#[cfg(target_os = "linux")]
pub fn interface_addrs() -> Vec<std::net::IpAddr> {
    let mut out: Vec<std::net::IpAddr> = ipv4_interface_addrs()
        .into_iter()
        .map(std::net::IpAddr::V4)
        .collect();
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        out.extend(parse_if_inet6(&text).into_iter().map(std::net::IpAddr::V6));
    }
    out
}

/// The IPv6 addresses of `/proc/net/if_inet6`: each line's first field, 32 hex
/// digits.
#[cfg(any(target_os = "linux", test))]
fn parse_if_inet6(text: &str) -> Vec<std::net::Ipv6Addr> {
    text.lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            if hex.len() != 32 {
                return None;
            }
            u128::from_str_radix(hex, 16)
                .ok()
                .map(std::net::Ipv6Addr::from)
        })
        .collect()
}

/// The IPv4 addresses of the interfaces (`SIOCGIFCONF`, asked again with a larger
/// buffer while it fills one, up to 4,096 addresses).
#[cfg(target_os = "linux")]
fn ipv4_interface_addrs() -> Vec<std::net::Ipv4Addr> {
    // Any IPv4 socket answers SIOCGIFCONF; it is never connected.
    let Ok(sock) = super::tcp_socket(std::net::SocketAddr::from(([0, 0, 0, 0], 0))) else {
        return Vec::new();
    };
    let size = std::mem::size_of::<libc::ifreq>();
    let mut slots = 32usize;
    loop {
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut reqs: Vec<libc::ifreq> = vec![unsafe { std::mem::zeroed() }; slots];
        // SAFETY: as above, for ifconf.
        let mut conf: libc::ifconf = unsafe { std::mem::zeroed() };
        conf.ifc_len = (slots * size) as libc::c_int;
        conf.ifc_ifcu.ifcu_req = reqs.as_mut_ptr();
        // SAFETY: conf describes the buffer reqs, which outlives the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFCONF as _, &mut conf) } < 0 {
            return Vec::new();
        }
        let used = usize::try_from(conf.ifc_len).unwrap_or(0) / size;
        if used < slots || slots >= 4096 {
            return reqs[..used.min(slots)]
                .iter()
                .filter_map(|r| {
                    // SAFETY: SIOCGIFCONF fills each entry's address member.
                    let sa = unsafe { r.ifr_ifru.ifru_addr };
                    if i32::from(sa.sa_family) != libc::AF_INET {
                        return None;
                    }
                    // SAFETY: an AF_INET address is a sockaddr_in, the same size as
                    // the sockaddr it was read into.
                    let sin: libc::sockaddr_in = unsafe { std::mem::transmute(sa) };
                    Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                })
                .collect();
        }
        slots = (slots * 4).min(4096);
    }
}

/// Addresses of the local interfaces (getifaddrs), for recognising our own MX.
#[cfg(not(target_os = "linux"))]
pub fn interface_addrs() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned and is not freed yet.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family AF_INET means the sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                    u32::from_be(sin.sin_addr.s_addr),
                )));
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6 means the sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                    sin6.sin6_addr.s6_addr,
                )));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_include_loopback() {
        let addrs = interface_addrs();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()));
        // ::1 too, where the kernel lists it.
        #[cfg(target_os = "linux")]
        if std::fs::read_to_string("/proc/net/if_inet6")
            .is_ok_and(|t| t.contains("00000000000000000000000000000001"))
        {
            assert!(addrs.contains(&"::1".parse().unwrap()), "{addrs:?}");
        }
    }

    #[test]
    fn if_inet6_lines_give_their_addresses_and_nothing_else() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\n\
                    fe800000000000000211223344556677 02 40 20 80     eth0\n\
                    short 02 40 20 80 eth1\n\
                    zz800000000000000211223344556677 02 40 20 80     eth2\n\n";
        assert_eq!(
            parse_if_inet6(text),
            vec![
                "::1".parse::<std::net::Ipv6Addr>().unwrap(),
                "fe80::211:2233:4455:6677".parse().unwrap()
            ]
        );
    }
}
