//! Shared by the memory tests: the real server in a child process with small mailboxes and no
//! rate limit, its RSS from /proc, and members joining it on bare WebSockets.
#![allow(dead_code)]

use crate::child::{self, Child};
use crate::common::{fixture, raw_join, Raw};

/// The server in a child process (its home a fresh folder named after `name`), with mailboxes of
/// `each` bytes and `total` in all and no rate limit, its admin joined; its address and pid.
pub fn start(name: &str, each: usize, total: usize) -> (Child, String, u32) {
    let home = child::temp_dir(name);
    let (each, total) = (each.to_string(), total.to_string());
    let admin = fixture("admin.pem");
    let mut server = Child::start(
        &[
            "-p",
            "0",
            "--admin-private-key",
            admin.to_str().unwrap(),
            "--rate-limit",
            "100000",
            "--mailbox-bytes",
            &each,
            "--mailbox-total",
            &total,
        ],
        &home,
    );
    let addr = server.addr();
    server.wait_for("admin connected");
    let pid = server.pid();
    (server, addr, pid)
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Joins the server at `addr` as `name` on a bare WebSocket.
pub async fn join(addr: &str, name: &str, key: &dyspatcher::crypto::Identity) -> Raw {
    let tcp = smol::net::TcpStream::connect(addr).await.unwrap();
    let mut ws = async_tungstenite::client_async(format!("ws://{addr}/ws"), tcp)
        .await
        .unwrap()
        .0;
    let welcome = raw_join(&mut ws, name, key, key).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}
