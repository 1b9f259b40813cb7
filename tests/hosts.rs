//! `Host` and `Origin` over real sockets: the page and `/ws` answer only under the server's own
//! names (a DNS-rebinding page sends its own domain as both), `--allowed-host` adds names, and a
//! present `Origin` must match the `Host`'s scheme, host and port.
mod common;

use common::*;
use dyspatcher::http::HostName;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

const UPGRADE: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// Sends one request with `headers` for `path` and returns the status line and the body; the
/// connection is closed after the answer (`Connection: close`, or the end of the upgrade head).
async fn ask(server: &TestServer, path: &str, headers: &str) -> (String, String) {
    let mut tcp = smol::net::TcpStream::connect(server.running.addr)
        .await
        .unwrap();
    let close = if path == "/ws" {
        UPGRADE
    } else {
        "Connection: close\r\n"
    };
    let request = format!("GET {path} HTTP/1.1\r\n{headers}{close}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    // A 101 leaves the socket open (the challenge follows): stop at the end of its head.
    loop {
        let n = within(10, "an answer", tcp.read(&mut chunk)).await.unwrap();
        out.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&out);
        if n == 0 || (text.starts_with("HTTP/1.1 101") && text.contains("\r\n\r\n")) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// The status code of `GET path` with `headers`.
async fn code(server: &TestServer, path: &str, headers: &str) -> u16 {
    let (status, _) = ask(server, path, headers).await;
    status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status:?}"))
}

#[test]
fn a_foreign_host_is_misdirected_for_the_page_and_the_websocket() {
    smol::block_on(async {
        let server = start(|_| {});
        let port = server.running.addr.port();
        let evil = format!(
            "Host: rebind.evil.example:{port}\r\nOrigin: http://rebind.evil.example:{port}\r\n"
        );
        for path in ["/", "/ws", "/app.js"] {
            let (status, body) = ask(&server, path, &evil).await;
            assert_eq!(status, "HTTP/1.1 421 Misdirected Request", "{path}");
            assert_eq!(
                body,
                "`rebind.evil.example` is not a name of this server (its operator may allow it with --allowed-host)\n"
            );
        }
        // Without an Origin too (a rebinding page loading the server's page in a frame).
        let (status, _) = ask(&server, "/", &format!("Host: 192.0.2.1:{port}\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 421"), "{status}");
    });
}

#[test]
fn a_foreign_origin_with_our_host_is_forbidden() {
    smol::block_on(async {
        let server = start(|_| {});
        let addr = server.running.addr;
        let port = addr.port();
        for origin in [
            format!("http://evil.example:{port}"),
            format!("https://{addr}"),
            format!("http://127.0.0.1:{}", port.wrapping_add(1)),
            format!("http://localhost:{port}"),
            "null".to_string(),
        ] {
            for path in ["/", "/ws"] {
                let (status, body) = ask(
                    &server,
                    path,
                    &format!("Host: {addr}\r\nOrigin: {origin}\r\n"),
                )
                .await;
                assert_eq!(status, "HTTP/1.1 403 Forbidden", "{path} {origin}");
                assert!(
                    body.contains(&format!("Origin `{origin}` is not `http://{addr}`")),
                    "{body}"
                );
            }
        }
    });
}

#[test]
fn our_addresses_and_names_are_served() {
    smol::block_on(async {
        let server = start(|_| {});
        let port = server.running.addr.port();
        for (host, origin) in [
            (
                format!("127.0.0.1:{port}"),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                format!("localhost:{port}"),
                format!("http://localhost:{port}"),
            ),
            (format!("[::1]:{port}"), format!("http://[::1]:{port}")),
            (
                format!("LocalHost.:{port}"),
                format!("http://localhost:{port}"),
            ),
            // No port: the default one, on both sides (a proxy or a port forward on port 80).
            ("127.0.0.1".to_string(), "http://127.0.0.1".to_string()),
            ("localhost".to_string(), "http://localhost:80".to_string()),
        ] {
            let plain = format!("Host: {host}\r\n");
            let with_origin = format!("Host: {host}\r\nOrigin: {origin}\r\n");
            assert_eq!(code(&server, "/", &plain).await, 200, "{host}");
            assert_eq!(code(&server, "/", &with_origin).await, 200, "{host}");
            assert_eq!(code(&server, "/ws", &with_origin).await, 101, "{host}");
        }
    });
}

#[test]
fn allowed_hosts_and_the_tunnel_server_are_served() {
    smol::block_on(async {
        let server = start(|c| {
            c.allowed_hosts = vec![HostName::parse("chat.example.org").unwrap()];
            let mut tunnel = dyspatcher::tunnel::TunnelSettings::new(
                "ssh.example.net",
                22,
                "nobody",
                std::path::Path::new("/nonexistent"),
            );
            // No ssh runs: only the names matter here.
            tunnel.ssh_program = "/nonexistent/ssh".into();
            c.tunnel = Some(tunnel);
        });
        let allowed = "Host: chat.example.org:8080\r\nOrigin: http://chat.example.org:8080\r\n";
        assert_eq!(code(&server, "/", allowed).await, 200);
        assert_eq!(code(&server, "/ws", allowed).await, 101);
        // A TLS proxy in front of an allowed name: the browser's origin is https.
        let proxied = "Host: chat.example.org\r\nOrigin: https://chat.example.org\r\n";
        assert_eq!(code(&server, "/ws", proxied).await, 101);
        let tunnel = "Host: ssh.example.net:9000\r\nOrigin: http://ssh.example.net:9000\r\n";
        assert_eq!(code(&server, "/ws", tunnel).await, 101);
        for other in [
            "chat.example.org.evil.example",
            "example.org",
            "evil.example",
        ] {
            assert_eq!(
                code(&server, "/ws", &format!("Host: {other}\r\n")).await,
                421
            );
        }
        // https is accepted only for a name the operator allowed, not for the server's own.
        let port = server.running.addr.port();
        let own = format!("Host: 127.0.0.1:{port}\r\nOrigin: https://127.0.0.1:{port}\r\n");
        assert_eq!(code(&server, "/ws", &own).await, 403);
    });
}

#[test]
fn a_missing_or_malformed_host_is_a_bad_request() {
    smol::block_on(async {
        let server = start(|_| {});
        for (headers, says) in [
            ("", "no Host header"),
            (
                "Host: localhost\r\nHost: localhost\r\n",
                "more than one Host header",
            ),
            (
                "Host: ::1\r\n",
                "malformed Host header: an IPv6 address needs brackets",
            ),
            (
                "Host: localhost:http\r\n",
                "malformed Host header: the port is not a number",
            ),
            (
                "Host: local host\r\n",
                "malformed Host header: only letters",
            ),
            ("Host: \r\n", "malformed Host header: no host"),
        ] {
            for path in ["/", "/ws"] {
                let (status, body) = ask(&server, path, headers).await;
                assert_eq!(status, "HTTP/1.1 400 Bad Request", "{headers:?}");
                assert!(body.starts_with(says), "{headers:?}: {body}");
            }
        }
    });
}
