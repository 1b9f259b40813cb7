//! dyspatcher: a private, end-to-end encrypted chat service in one small executable.
//!
//! People chat from any browser; the server relays ciphertext it cannot read (see
//! `docs/PROTOCOL.md`). The admin chats and administers from the server's prompt.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod allowlist;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod console;
pub mod crypto;
pub mod http;
pub mod hub;
pub mod keycache;
pub mod onboard;
pub mod panic;
pub mod protocol;
pub mod replay;
pub mod server;
pub mod session;
pub mod terminal;
pub mod throttle;
pub mod tls;
pub mod transcript;
pub mod tunnel;
pub mod ws;
