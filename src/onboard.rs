//! Getting people in: every URL a browser can use, the names a self-signed certificate must cover,
//! and a QR code of the main URL for phones.

use std::net::{IpAddr, SocketAddr};

use qrcode::render::unicode::Dense1x2;
use qrcode::QrCode;

/// The non-loopback addresses of this machine's interfaces, IPv4 first.
pub fn interface_addresses(ipv6: bool) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && (ipv6 || ip.is_ipv4()))
        .filter(|ip| match ip {
            // Link-local IPv6 needs a zone index that browsers do not accept in URLs.
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect();
    addrs.sort_by_key(|ip| ip.is_ipv6());
    addrs.dedup();
    addrs
}

/// The names a certificate for a server listening on `ip` must cover.
pub fn certificate_names(ip: IpAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if ip.is_unspecified() {
        names.extend(
            interface_addresses(ip.is_ipv6())
                .iter()
                .map(IpAddr::to_string),
        );
    } else if !ip.is_loopback() {
        names.push(ip.to_string());
    }
    names.dedup();
    names
}

/// Every URL a browser can use to reach a server bound to `addr`: the interface addresses when it
/// listens on all of them, then loopback.
pub fn urls(addr: SocketAddr, tls: bool) -> Vec<String> {
    let scheme = if tls { "https" } else { "http" };
    let url = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}/", addr.port()),
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{}/", addr.port()),
    };
    if addr.ip().is_unspecified() {
        let mut all: Vec<String> = interface_addresses(addr.is_ipv6())
            .into_iter()
            .map(url)
            .collect();
        all.push(url(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));
        all
    } else {
        vec![url(addr.ip())]
    }
}

/// A QR code of `text` drawn with Unicode half blocks, for a terminal.
pub fn qr(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_one_address_and_for_all() {
        let one: SocketAddr = "192.0.2.1:8443".parse().unwrap();
        assert_eq!(urls(one, true), ["https://192.0.2.1:8443/"]);
        let all: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let list = urls(all, false);
        assert_eq!(list.last().unwrap(), "http://127.0.0.1:8080/");
        assert!(list
            .iter()
            .all(|u| u.starts_with("http://") && !u.contains("0.0.0.0")));
    }

    #[test]
    fn certificate_names_cover_the_listening_address() {
        let names = certificate_names("192.0.2.9".parse().unwrap());
        assert!(
            names.contains(&"192.0.2.9".to_string()) && names.contains(&"localhost".to_string())
        );
    }

    #[test]
    fn qr_codes_render() {
        let code = qr("https://192.0.2.1:8443/").unwrap();
        assert!(code.lines().count() > 10);
    }
}
