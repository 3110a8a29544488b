//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a front
//! such as HAProxy sends first on each connection, naming the client it
//! stands for. hiku reads it on a listener configured for it
//! (`front.proxy_protocol`), and believes it only from the fronts it trusts
//! (`front.trusted_proxies`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 header, `\r\n` included.
const V1_MAX: usize = 107;
/// What every version 2 header starts with.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The most address bytes a version 2 header may carry (TLVs included).
const V2_MAX_BODY: usize = 512;

/// A whole header, read from the front of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The client the front stands for; `None` for the front's own
    /// connections (v2 `LOCAL`, its health checks) or an unknown family.
    pub(crate) source: Option<SocketAddr>,
    /// The header's length in bytes.
    pub(crate) len: usize,
}

/// Why a connection's first bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotProxy(pub &'static str);

impl std::fmt::Display for NotProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no PROXY protocol header: {}", self.0)
    }
}

/// The header at the start of `data`: `Ok(None)` if more bytes are needed.
pub(crate) fn parse(data: &[u8]) -> Result<Option<Header>, NotProxy> {
    let v2 = data.len().min(V2_SIGNATURE.len());
    if data[..v2] == V2_SIGNATURE[..v2] && !data.is_empty() {
        return parse_v2(data);
    }
    let v1 = data.len().min(6);
    if data[..v1] == b"PROXY "[..v1] {
        return parse_v1(data);
    }
    Err(NotProxy("the connection starts with something else"))
}

fn parse_v1(data: &[u8]) -> Result<Option<Header>, NotProxy> {
    let Some(end) = data.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if data.len() >= V1_MAX { Err(NotProxy("a version 1 line longer than 107 bytes")) } else { Ok(None) };
    };
    let line = data[..end].strip_suffix(b"\r").ok_or(NotProxy("a version 1 line not ended by CRLF"))?;
    let line = std::str::from_utf8(line).map_err(|_| NotProxy("a version 1 line that is not text"))?;
    let mut fields = line.split(' ').skip(1);
    let bad = NotProxy("a malformed version 1 line");
    let source = match fields.next() {
        Some("UNKNOWN") => None,
        Some(family @ ("TCP4" | "TCP6")) => {
            let ip: IpAddr = fields.next().and_then(|s| s.parse().ok()).ok_or(bad)?;
            let _destination: IpAddr = fields.next().and_then(|s| s.parse().ok()).ok_or(bad)?;
            let port: u16 = fields.next().and_then(|s| s.parse().ok()).ok_or(bad)?;
            let _: u16 = fields.next().and_then(|s| s.parse().ok()).ok_or(bad)?;
            if fields.next().is_some() || ip.is_ipv4() != (family == "TCP4") {
                return Err(bad);
            }
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(bad),
    };
    Ok(Some(Header { source, len: end + 1 }))
}

fn parse_v2(data: &[u8]) -> Result<Option<Header>, NotProxy> {
    if data.len() < 16 {
        return Ok(None);
    }
    let (version, command, family) = (data[12] >> 4, data[12] & 0x0f, data[13]);
    if version != 2 || command > 1 {
        return Err(NotProxy("a version 2 header of an unknown version or command"));
    }
    let body_len = usize::from(u16::from_be_bytes([data[14], data[15]]));
    if body_len > V2_MAX_BODY {
        return Err(NotProxy("a version 2 header too long"));
    }
    let len = 16 + body_len;
    let Some(body) = data.get(16..len) else { return Ok(None) };
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    let source = match (command, family) {
        // LOCAL: the front's own connection (a health check).
        (0, _) => None,
        (_, 0x11) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(ip.into(), port(8)))
        }
        (_, 0x21) if body.len() >= 36 => {
            let octets: [u8; 16] = body[..16].try_into().expect("16 bytes");
            Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port(32)))
        }
        (_, 0x11 | 0x21) => return Err(NotProxy("a version 2 header shorter than its addresses")),
        // UNSPEC, or a family that is not TCP over IP: no address to take.
        _ => None,
    };
    Ok(Some(Header { source, len }))
}

/// An address or a network (`10.0.0.0/8`, `::1`) a front may connect from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `ip` or `ip/prefix`; anything else is an error naming it.
    pub(crate) fn parse(text: &str) -> Result<Network, String> {
        let bad = || format!("{text:?} is not an IP address or network (e.g. 10.0.0.0/8)");
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(bad());
        }
        Ok(Network { addr: addr.to_canonical(), prefix })
    }

    /// Whether `ip` is in it.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip.to_canonical() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let ((net, width), (addr, addr_width)) = (bits(self.addr), bits(ip));
        if width != addr_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= 128 || (net >> shift) == (addr >> shift)
    }
}

impl std::fmt::Display for Network {
    /// As the config takes it: `ip/prefix`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20 | command, family]);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn reads_version_1_lines() {
        let line = b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 9020\r\nPOST /run/f HTTP/1.1\r\n";
        let h = parse(line).unwrap().unwrap();
        assert_eq!((h.source, h.len), (Some("10.1.2.3:5555".parse().unwrap()), 41));
        let six = parse(b"PROXY TCP6 ::1 ::2 1 2\r\n").unwrap().unwrap();
        assert_eq!(six.source, Some("[::1]:1".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().source, None);
        // Cut anywhere: more is needed.
        for cut in 0..41 {
            assert_eq!(parse(&line[..cut]), Ok(None), "{cut}");
        }
        for bad in [
            &b"PROXY TCP4 10.1.2.3 127.0.0.1 5555\r\n"[..],
            b"PROXY TCP4 ::1 ::2 1 2\r\n",
            b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 9020\n",
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 70000\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&[b'P'; 200]).is_err(), "not PROXY at all");
        let long = [&b"PROXY "[..], &[b'1'; 120]].concat();
        assert!(parse(&long).is_err(), "no end within 107 bytes");
    }

    #[test]
    fn reads_version_2_headers() {
        let four = v2(1, 0x11, &[10, 1, 2, 3, 127, 0, 0, 1, 0x15, 0xb3, 0x23, 0x3c]);
        let h = parse(&four).unwrap().unwrap();
        assert_eq!((h.source, h.len), (Some("10.1.2.3:5555".parse().unwrap()), 28));
        for cut in 1..four.len() {
            assert_eq!(parse(&four[..cut]), Ok(None), "{cut}");
        }
        let mut six_body = [0u8; 36];
        six_body[15] = 1;
        six_body[32..34].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(parse(&v2(1, 0x21, &six_body)).unwrap().unwrap().source, Some("[::1]:80".parse().unwrap()));
        // A health check (LOCAL), and a family without an IP address.
        assert_eq!(parse(&v2(0, 0x00, &[])).unwrap().unwrap(), Header { source: None, len: 16 });
        assert_eq!(parse(&v2(1, 0x31, &[0; 216])).unwrap().unwrap().source, None);
        // With TLVs after the addresses: their bytes are part of the header.
        let tlv = v2(1, 0x11, &[10, 1, 2, 3, 127, 0, 0, 1, 0, 1, 0, 2, 0x04, 0, 1, 9]);
        assert_eq!(parse(&tlv).unwrap().unwrap().len, 32);
        assert!(parse(&v2(2, 0x11, &[0; 12])).is_err(), "unknown command");
        assert!(parse(&v2(1, 0x11, &[0; 4])).is_err(), "too short for its family");
        let mut v3 = four.clone();
        v3[12] = 0x31;
        assert!(parse(&v3).is_err(), "unknown version");
    }

    #[test]
    fn networks_hold_their_addresses() {
        let net = |s| Network::parse(s).unwrap();
        assert!(net("10.0.0.0/8").contains("10.200.1.1".parse().unwrap()));
        assert!(!net("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(net("127.0.0.1").contains("::ffff:127.0.0.1".parse().unwrap()), "mapped IPv4");
        assert!(!net("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(net("::1").contains("::1".parse().unwrap()));
        assert!(!net("::1").contains("127.0.0.1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(net("fd00::/8").contains("fd12::1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "::1/129", "host", "10.0.0.0/x"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }
}
