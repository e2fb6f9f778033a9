//! Which addresses the URL fetcher may connect to: a pure classification, no I/O.
//!
//! Only publicly routable unicast addresses pass. Everything that can reach this machine, its
//! local networks or a cloud metadata service is refused, in every spelling: IPv4-mapped,
//! IPv4-compatible, NAT64 and 6to4 IPv6 forms are judged by the IPv4 address they carry.
//! Odd host spellings (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) never get here as
//! strings: the `url` crate normalises them to `127.0.0.1` when it parses an http(s) URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether the fetcher may connect to `ip`.
pub fn is_allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4),
        IpAddr::V6(v6) => v6_allowed(v6),
    }
}

fn v4_allowed(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0                            // 0.0.0.0/8 "this network", incl. unspecified
        || a == 10                                  // 10.0.0.0/8 private
        || a == 127                                 // 127.0.0.0/8 loopback
        || (a == 100 && (b & 0xc0) == 64)           // 100.64.0.0/10 carrier-grade NAT
        || (a == 169 && b == 254)                   // 169.254.0.0/16 link-local, cloud metadata
        || (a == 172 && (b & 0xf0) == 16)           // 172.16.0.0/12 private
        || (a == 192 && b == 168)                   // 192.168.0.0/16 private
        || (a == 192 && b == 0 && c == 0)           // 192.0.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)           // 192.0.2.0/24 documentation
        || (a == 192 && b == 88 && c == 99)         // 192.88.99.0/24 6to4 relay anycast
        || (a == 198 && (b & 0xfe) == 18)           // 198.18.0.0/15 benchmarking
        || (a == 198 && b == 51 && c == 100)        // 198.51.100.0/24 documentation
        || (a == 203 && b == 0 && c == 113)         // 203.0.113.0/24 documentation
        || a >= 224; // 224/4 multicast, 240/4 reserved, 255.255.255.255 broadcast
    !refused
}

fn v6_allowed(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));

    // :: and ::1, then the forms that carry an IPv4 address.
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return v4_allowed(embedded_v4(s[6], s[7]));
    }
    // ::ffff:0:a.b.c.d (SIIT translated).
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return v4_allowed(embedded_v4(s[6], s[7]));
    }
    // 64:ff9b::/96 well-known NAT64 prefix.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_allowed(embedded_v4(s[6], s[7]));
    }
    // 64:ff9b:1::/48 local-use NAT64: translates to whatever the local network chooses.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return false;
    }
    // 2002::/16 6to4: the IPv4 address is in bits 16..48.
    if s[0] == 0x2002 {
        return v4_allowed(embedded_v4(s[1], s[2]));
    }
    // Outside 2000::/3 everything is reserved, unique-local (fc00::/7), link-local (fe80::/10),
    // site-local (fec0::/10), multicast (ff00::/8) or discard-only (100::/64).
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let refused = (s[0] == 0x2001
        && (s[1] == 0                       // 2001::/32 Teredo (tunnels to anywhere)
            || s[1] == 0x0db8               // 2001:db8::/32 documentation
            || (s[1] == 2 && s[2] == 0)     // 2001:2::/48 benchmarking
            || (s[1] & 0xfff0) == 0x10))    // 2001:10::/28 ORCHID
        || (s[0] == 0x3fff && (s[1] & 0xf000) == 0); // 3fff::/20 documentation
    !refused
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn refuses_non_public_ipv4() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "192.88.99.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_allowed(ip(a)), "{a} must be refused");
        }
    }

    #[test]
    fn allows_public_ipv4_next_to_the_refused_ranges() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(is_allowed(ip(a)), "{a} must be allowed");
        }
    }

    #[test]
    fn refuses_non_public_ipv6() {
        for a in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::2",
            "100::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "3fff::1",
            "3fff:fff::1",
            "64:ff9b:1::1",
            // Reserved space outside 2000::/3.
            "4000::1",
            "::2:0:0:1",
        ] {
            assert!(!is_allowed(ip(a)), "{a} must be refused");
        }
    }

    #[test]
    fn judges_ipv6_forms_by_their_ipv4_address() {
        for a in [
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::0.0.0.2",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::10.1.2.3",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
        ] {
            assert!(!is_allowed(ip(a)), "{a} must be refused");
        }
        for a in [
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "3fff:1000::1",
            "2001:4860:4860::8888",
        ] {
            assert!(is_allowed(ip(a)), "{a} must be allowed");
        }
    }

    /// The odd spellings of loopback hosts never reach the policy as strings: `url` turns them
    /// into the address they mean, which the policy refuses.
    #[test]
    fn odd_host_spellings_normalise_to_refused_addresses() {
        for (raw, expected) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://017700000001/", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
            ("https://0xa9fea9fe/", "169.254.169.254"),
            ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
            ("http://[0:0:0:0:0:ffff:7f00:0001]/", "::ffff:7f00:1"),
        ] {
            let url = url::Url::parse(raw).expect("parses");
            let host: IpAddr = match url.host() {
                Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
                Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
                other => panic!("{raw} parsed as {other:?}"),
            };
            assert_eq!(host, ip(expected), "{raw}");
            assert!(!is_allowed(host), "{raw}");
        }
    }
}
