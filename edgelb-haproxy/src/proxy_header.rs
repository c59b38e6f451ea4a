//! A parser for the PROXY protocol header (v1 text and v2 binary) that HAProxy sends to
//! backends, for the demo backend and for tests that check the real client address arrives.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX_LEN: usize = 107;

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection: the real client and the address it connected to.
    Proxied {
        /// Protocol version, 1 or 2.
        version: u8,
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to (the edge's frontend).
        destination: SocketAddr,
    },
    /// A connection made by the proxy itself (v2 `LOCAL`, v1 `UNKNOWN`): a health check.
    Local {
        /// Protocol version, 1 or 2.
        version: u8,
    },
}

/// The result of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet to decide.
    Incomplete,
    /// The connection does not start with a PROXY header.
    NoHeader,
    /// A header, and how many bytes it took.
    Header(ProxyHeader, usize),
    /// It starts like a PROXY header but is malformed.
    Invalid(String),
}

/// Parses the start of a connection.
///
/// ```
/// use edgelb_haproxy::proxy_header::{parse, Parsed, ProxyHeader};
/// let text = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
/// match parse(text) {
///     Parsed::Header(ProxyHeader::Proxied { source, .. }, used) => {
///         assert_eq!(source.to_string(), "203.0.113.7:51234");
///         assert_eq!(&text[used..used + 3], b"GET");
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn parse(buf: &[u8]) -> Parsed {
    let sig_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig_len] == V2_SIGNATURE[..sig_len] {
        return if buf.len() < 16 {
            Parsed::Incomplete
        } else {
            parse_v2(buf)
        };
    }
    let v1_len = buf.len().min(6);
    if buf[..v1_len] == b"PROXY "[..v1_len] {
        return if v1_len < 6 {
            Parsed::Incomplete
        } else {
            parse_v1(buf)
        };
    }
    Parsed::NoHeader
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let ver_cmd = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid(format!("PROXY v2 header with version {}", ver_cmd >> 4));
    }
    let total = 16 + len;
    if buf.len() < total {
        return Parsed::Incomplete;
    }
    let body = &buf[16..total];
    match ver_cmd & 0x0f {
        0 => Parsed::Header(ProxyHeader::Local { version: 2 }, total),
        1 => {
            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
            let (source, destination) = match family >> 4 {
                1 if body.len() >= 12 => {
                    let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
                    (
                        SocketAddr::new(ip(&body[0..4]), port(&body[8..10])),
                        SocketAddr::new(ip(&body[4..8]), port(&body[10..12])),
                    )
                }
                2 if body.len() >= 36 => {
                    let ip = |b: &[u8]| {
                        let mut octets = [0u8; 16];
                        octets.copy_from_slice(b);
                        IpAddr::V6(Ipv6Addr::from(octets))
                    };
                    (
                        SocketAddr::new(ip(&body[0..16]), port(&body[32..34])),
                        SocketAddr::new(ip(&body[16..32]), port(&body[34..36])),
                    )
                }
                _ => return Parsed::Header(ProxyHeader::Local { version: 2 }, total),
            };
            Parsed::Header(
                ProxyHeader::Proxied {
                    version: 2,
                    source,
                    destination,
                },
                total,
            )
        }
        cmd => Parsed::Invalid(format!("PROXY v2 header with unknown command {cmd}")),
    }
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN {
            Parsed::Invalid("PROXY v1 header without CRLF".into())
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(line) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Invalid("PROXY v1 header is not ASCII".into());
    };
    let fields: Vec<&str> = line.split(' ').collect();
    let used = end + 2;
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parsed::Header(ProxyHeader::Local { version: 1 }, used),
        ["PROXY", "TCP4" | "TCP6", src, dst, sport, dport] => {
            let addr =
                |ip: &str, port: &str| Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?));
            match (addr(src, sport), addr(dst, dport)) {
                (Some(source), Some(destination)) => Parsed::Header(
                    ProxyHeader::Proxied {
                        version: 1,
                        source,
                        destination,
                    },
                    used,
                ),
                _ => Parsed::Invalid(format!("bad addresses in PROXY v1 header {line:?}")),
            }
        }
        _ => Parsed::Invalid(format!("malformed PROXY v1 header {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn v2_ipv4_and_ipv6() {
        let body4 = [203, 0, 113, 7, 10, 0, 0, 1, 0xc8, 0x22, 0x01, 0xbb];
        let buf = v2(1, 0x11, &body4);
        assert_eq!(
            parse(&buf),
            Parsed::Header(
                ProxyHeader::Proxied {
                    version: 2,
                    source: "203.0.113.7:51234".parse().unwrap(),
                    destination: "10.0.0.1:443".parse().unwrap()
                },
                28
            )
        );
        let mut body6 = vec![0u8; 36];
        body6[15] = 1; // ::1
        body6[31] = 2; // ::2
        body6[32..34].copy_from_slice(&4000u16.to_be_bytes());
        body6[34..36].copy_from_slice(&443u16.to_be_bytes());
        match parse(&v2(1, 0x21, &body6)) {
            Parsed::Header(ProxyHeader::Proxied { source, .. }, 52) => {
                assert_eq!(source.to_string(), "[::1]:4000")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v2_local_health_check_and_partial_input() {
        let buf = v2(0, 0, &[]);
        assert_eq!(
            parse(&buf),
            Parsed::Header(ProxyHeader::Local { version: 2 }, 16)
        );
        assert_eq!(parse(&buf[..10]), Parsed::Incomplete);
        let full = v2(1, 0x11, &[1; 12]);
        assert_eq!(parse(&full[..20]), Parsed::Incomplete);
    }

    #[test]
    fn v1_and_plain_traffic() {
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header(ProxyHeader::Local { version: 1 }, 15)
        );
        assert_eq!(parse(b"PROX"), Parsed::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::NoHeader);
        assert!(matches!(
            parse(b"PROXY TCP4 x y 1 2\r\n"),
            Parsed::Invalid(_)
        ));
        assert!(matches!(
            parse(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'A'].repeat(20)),
            Parsed::Invalid(_)
        ));
    }
}
