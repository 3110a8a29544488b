//! Worker URLs: `http://host[:port]`, kept in canonical form.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::http::strip_prefix_ignore_case;

/// An absolute `http://host[:port]` worker URL, kept in canonical form
/// (`http://host:port`, host in lower case, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkerUrl {
    canonical: String,
    /// `host:port` (IPv6 hosts in brackets): what goes in a `Host` header.
    authority_start: usize,
    host_end: usize,
    port: u16,
}

impl WorkerUrl {
    /// Accepts `http://host[:port][/]`; anything else is an error naming the URL.
    pub fn parse(text: &str) -> Result<WorkerUrl, String> {
        let bad = |why: &str| format!("worker URL {text:?} is not an absolute http://host[:port] URL ({why})");
        let t = text.trim();
        let Some(rest) = strip_prefix_ignore_case(t, "http://") else {
            if strip_prefix_ignore_case(t, "https://").is_some() {
                return Err(bad("https is not supported"));
            }
            return Err(bad("it must start with http://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(bad("only scheme, host and port are allowed"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed ["))?;
            let host = &v6[..end];
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("bad IPv6 address"));
            }
            (&authority[..end + 2], &v6[end + 1..])
        } else {
            match authority.find(':') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            }
        };
        let port = match port {
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        let valid_host = |h: &str| {
            !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        if !host.starts_with('[') && !valid_host(host) {
            return Err(bad("bad host"));
        }
        let canonical = format!("http://{}:{port}", host.to_ascii_lowercase());
        Ok(WorkerUrl { authority_start: 7, host_end: 7 + host.len(), canonical, port })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.canonical
    }

    /// `host:port`, as sent in `Host` headers and by OpenLambda in `destroySandbox`.
    pub(crate) fn authority(&self) -> &str {
        &self.canonical[self.authority_start..]
    }

    /// The host without the port (IPv6 in brackets).
    pub(crate) fn host(&self) -> &str {
        &self.canonical[self.authority_start..self.host_end]
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resolves the host (blocking: call it off the request path).
    pub(crate) fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let host = self.host().trim_start_matches('[').trim_end_matches(']');
        let mut addrs: Vec<SocketAddr> = (host, self.port).to_socket_addrs()?.collect();
        addrs.sort_by_key(|a| a.is_ipv6());
        addrs.dedup();
        if addrs.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no address"));
        }
        Ok(addrs)
    }
}

impl fmt::Display for WorkerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_urls() {
        let u = WorkerUrl::parse("http://[::1]:5000").unwrap();
        assert_eq!((u.as_str(), u.authority(), u.host(), u.port()), ("http://[::1]:5000", "[::1]:5000", "[::1]", 5000));
        assert_eq!(WorkerUrl::parse("HTTP://Example.com").unwrap().as_str(), "http://example.com:80");
        for bad in [
            "",
            "http://",
            "http://a:",
            "http://a:0",
            "http://a:99999",
            "http://a/x",
            "http://a?q",
            "https://a",
            "ftp://a",
            "http://u@a",
            "http://[zz]:1",
            "http://a b",
            "123456€",
            "http://€",
            "httpé://a",
            "http://a:€",
        ] {
            assert!(WorkerUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
