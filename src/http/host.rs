//! Which `Host` and `Origin` a request may carry: only this server's own names and addresses.
//! A web page elsewhere can point its own domain at this server (DNS rebinding); the browser then
//! sends that domain as `Host` and `Origin`, which match each other but not this server.

use std::fmt;
use std::net::IpAddr;

use super::Request;

/// A host as written in a `Host` header, an `Origin` or `--allowed-host`, without a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    /// An IP address (IPv4-mapped IPv6 addresses are kept as IPv4).
    Ip(IpAddr),
    /// A DNS name, lowercase, without a trailing dot.
    Name(String),
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

impl HostName {
    /// Parses a host without a port: a DNS name, an IPv4 address, or an IPv6 address with or
    /// without brackets.
    ///
    /// ```
    /// use dyspatcher::http::HostName;
    /// assert_eq!(HostName::parse("Chat.Example.ORG.").unwrap().to_string(), "chat.example.org");
    /// assert_eq!(HostName::parse("[::1]").unwrap(), HostName::parse("::1").unwrap());
    /// assert!(HostName::parse("evil.example/x").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        if let Some(inner) = bare {
            return inner
                .parse::<std::net::Ipv6Addr>()
                .map(|v6| Self::Ip(IpAddr::V6(v6).to_canonical()))
                .map_err(|_| "not an IPv6 address inside the brackets");
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(ip.to_canonical()));
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.is_empty() || name.len() > 253 {
            return Err("a host name has 1 to 253 characters");
        }
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name.split('.').all(label_ok) {
            return Err("only letters, digits, `-` and `_` in dot-separated labels");
        }
        Ok(Self::Name(name.to_ascii_lowercase()))
    }
}

/// Splits `host[:port]` as in a `Host` header or an origin (RFC 9110 §7.2); IPv6 in brackets.
///
/// ```
/// use dyspatcher::http::{split_authority, HostName};
/// let (host, port) = split_authority("[::1]:8080").unwrap();
/// assert_eq!((host.to_string(), port), ("[::1]".to_string(), Some(8080)));
/// assert_eq!(split_authority("localhost").unwrap().1, None);
/// assert!(split_authority("::1").is_err() && split_authority("h:99999").is_err());
/// ```
pub fn split_authority(s: &str) -> Result<(HostName, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or("`[` without `]`")?;
        let rest = &s[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err("text after the IPv6 address"),
        };
        (&s[..=end], port)
    } else {
        match s.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err("an IPv6 address needs brackets"),
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        // RFC 9110 allows an empty port: the default one.
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port over 65535")?)
        }
        Some(_) => return Err("the port is not a number"),
    };
    if host.is_empty() {
        return Err("no host");
    }
    Ok((HostName::parse(host)?, port))
}

/// Why a request's `Host` or `Origin` was refused: the status line and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `400 Bad Request`, `421 Misdirected Request` or `403 Forbidden`.
    pub status: &'static str,
    /// What is wrong, for the body.
    pub reason: String,
}

fn refused(status: &'static str, reason: String) -> Refused {
    Refused { status, reason }
}

/// The names and addresses this server answers to.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// Its own: listening addresses, certificate names, the tunnel's SSH server.
    own: Vec<HostName>,
    /// Names the operator added with `--allowed-host` (possibly a TLS proxy in front).
    extra: Vec<HostName>,
    /// Listening on loopback or everywhere: `localhost` and every loopback address count.
    loopback: bool,
    /// Listening everywhere: every address of the machine counts, also one it gets later.
    every_interface: bool,
    /// Whether the port speaks TLS (the scheme an origin must have).
    tls: bool,
}

impl Hosts {
    /// The hosts of a server listening on `listening` (with TLS or not).
    pub fn new(listening: &[IpAddr], tls: bool) -> Self {
        let mut hosts = Self {
            tls,
            ..Self::default()
        };
        for ip in listening {
            if ip.is_unspecified() {
                hosts.every_interface = true;
                hosts.loopback = true;
                let all = crate::onboard::interface_addresses(true);
                hosts.own.extend(all.into_iter().map(HostName::Ip));
            } else if ip.is_loopback() {
                hosts.loopback = true;
            } else {
                hosts.own.push(HostName::Ip(ip.to_canonical()));
            }
        }
        if hosts.loopback {
            hosts.own.push(HostName::Name("localhost".into()));
        }
        hosts
    }

    /// Adds names of the server's own (a certificate's, the SSH tunnel's).
    pub fn with_own(mut self, names: impl IntoIterator<Item = HostName>) -> Self {
        self.own.extend(names);
        self
    }

    /// Adds the names the operator allowed with `--allowed-host`.
    pub fn with_allowed(mut self, names: impl IntoIterator<Item = HostName>) -> Self {
        self.extra.extend(names);
        self
    }

    /// Whether `host` names this server.
    pub fn knows(&self, host: &HostName) -> bool {
        match host {
            HostName::Ip(ip) if self.loopback && ip.is_loopback() => true,
            h if self.own.contains(h) || self.extra.contains(h) => true,
            // The machine may have joined another network since the start.
            HostName::Ip(ip) if self.every_interface => if_addrs::get_if_addrs()
                .is_ok_and(|all| all.iter().any(|i| i.ip().to_canonical() == *ip)),
            _ => false,
        }
    }

    /// Checks the request's `Host` (present once, well formed, one of ours) and its `Origin`
    /// if present (the same scheme, host and port).
    pub fn check(&self, req: &Request) -> Result<(), Refused> {
        let mut values = req.headers.iter().filter(|(n, _)| n == "host");
        let value = match (values.next(), values.next()) {
            (Some((_, v)), None) => v,
            (None, _) => return Err(refused("400 Bad Request", "no Host header".into())),
            (Some(_), Some(_)) => {
                return Err(refused(
                    "400 Bad Request",
                    "more than one Host header".into(),
                ))
            }
        };
        let (host, port) = split_authority(value)
            .map_err(|why| refused("400 Bad Request", format!("malformed Host header: {why}")))?;
        if !self.knows(&host) {
            return Err(refused(
                "421 Misdirected Request",
                format!("`{host}` is not a name of this server (its operator may allow it with --allowed-host)"),
            ));
        }
        match req.header("origin") {
            Some(origin) => self.check_origin(origin, &host, port),
            None => Ok(()),
        }
    }

    fn check_origin(
        &self,
        origin: &str,
        host: &HostName,
        port: Option<u16>,
    ) -> Result<(), Refused> {
        let ours = if self.tls { "https" } else { "http" };
        let refuse = || {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            refused(
                "403 Forbidden",
                format!("cross-origin request refused: Origin `{origin}` is not `{ours}://{host}{port}`"),
            )
        };
        let (scheme, authority) = origin.split_once("://").ok_or_else(refuse)?;
        let scheme = scheme.to_ascii_lowercase();
        // A TLS proxy in front of a plain port serves an allowed name as https.
        let scheme_ok = scheme == ours || (scheme == "https" && self.extra.contains(host));
        let (origin_host, origin_port) = split_authority(authority).map_err(|_| refuse())?;
        let default = if scheme == "https" { 443 } else { 80 };
        if !scheme_ok
            || origin_host != *host
            || origin_port.unwrap_or(default) != port.unwrap_or(default)
        {
            return Err(refuse());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn status(hosts: &Hosts, headers: &[(&str, &str)]) -> &'static str {
        match hosts.check(&request(headers)) {
            Ok(()) => "ok",
            Err(r) => r.status,
        }
    }

    #[test]
    fn loopback_listener_knows_localhost_and_loopback_only() {
        let hosts = Hosts::new(&["127.0.0.1".parse().unwrap()], false);
        for good in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST.",
            "[::1]:8080",
            "127.0.0.2",
        ] {
            assert_eq!(status(&hosts, &[("host", good)]), "ok", "{good}");
        }
        for evil in [
            "evil.example:8080",
            "192.0.2.1:8080",
            "localhost.evil.example",
        ] {
            assert_eq!(
                status(&hosts, &[("host", evil)]),
                "421 Misdirected Request",
                "{evil}"
            );
        }
        for bad in [
            "", "a b", "::1", "h:port", "h:70000", "[::1", "[::1]x", "h/x",
        ] {
            assert_eq!(
                status(&hosts, &[("host", bad)]),
                "400 Bad Request",
                "{bad:?}"
            );
        }
        assert_eq!(status(&hosts, &[]), "400 Bad Request");
        let twice = [("host", "localhost"), ("host", "localhost")];
        assert_eq!(status(&hosts, &twice), "400 Bad Request");
    }

    #[test]
    fn every_interface_means_every_address_of_the_machine() {
        for any in ["0.0.0.0", "::"] {
            let hosts = Hosts::new(&[any.parse().unwrap()], false);
            for i in if_addrs::get_if_addrs().unwrap() {
                assert!(hosts.knows(&HostName::Ip(i.ip())), "{}", i.ip());
            }
            assert!(hosts.knows(&HostName::parse("localhost").unwrap()));
            assert!(!hosts.knows(&HostName::parse("192.0.2.254").unwrap()));
            assert!(!hosts.knows(&HostName::parse("evil.example").unwrap()));
        }
    }

    #[test]
    fn a_specific_address_is_not_loopback() {
        let hosts = Hosts::new(&["192.0.2.7".parse().unwrap()], true)
            .with_own([HostName::parse("tunnel.example").unwrap()]);
        assert_eq!(status(&hosts, &[("host", "192.0.2.7:8443")]), "ok");
        assert_eq!(status(&hosts, &[("host", "tunnel.example:9000")]), "ok");
        assert_eq!(
            status(&hosts, &[("host", "localhost:8443")]),
            "421 Misdirected Request"
        );
    }

    #[test]
    fn origin_must_match_scheme_host_and_port() {
        let hosts = Hosts::new(&["127.0.0.1".parse().unwrap()], false)
            .with_allowed([HostName::parse("chat.example").unwrap()]);
        let check = |host, origin| status(&hosts, &[("host", host), ("origin", origin)]);
        assert_eq!(check("127.0.0.1:8080", "http://127.0.0.1:8080"), "ok");
        assert_eq!(check("[::1]:8080", "http://[::1]:8080"), "ok");
        assert_eq!(check("localhost", "http://localhost:80"), "ok");
        assert_eq!(check("localhost:80", "http://localhost"), "ok");
        assert_eq!(check("chat.example", "https://chat.example"), "ok");
        for (host, origin) in [
            ("127.0.0.1:8080", "https://127.0.0.1:8080"),
            ("127.0.0.1:8080", "http://127.0.0.1:8081"),
            ("127.0.0.1:8080", "http://localhost:8080"),
            ("127.0.0.1:8080", "http://evil.example:8080"),
            ("127.0.0.1:8080", "null"),
            ("127.0.0.1:8080", "ws://127.0.0.1:8080"),
            ("localhost", "https://localhost"),
        ] {
            assert_eq!(check(host, origin), "403 Forbidden", "{host} {origin}");
        }
        let tls = Hosts::new(&["127.0.0.1".parse().unwrap()], true);
        let check = |host, origin| status(&tls, &[("host", host), ("origin", origin)]);
        assert_eq!(check("localhost:8443", "https://localhost:8443"), "ok");
        assert_eq!(check("localhost", "https://localhost:443"), "ok");
        assert_eq!(
            check("localhost:8443", "http://localhost:8443"),
            "403 Forbidden"
        );
    }
}
