//! Turns the command line into a validated [`Config`]: every check with a message that names the
//! option and the reason lives here, so the rest of the program never sees raw arguments.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::allowlist::{AllowList, AllowListError};
use crate::cli::Args;
use crate::crypto::{CryptoError, Identity};
use crate::protocol;

/// Default port without TLS.
pub const DEFAULT_PORT: u16 = 8080;

/// Why the server cannot start. Each message names the option and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad admin name.
    #[error("--admin-nickname: `{0}` must be 4 to 15 characters, only A-Z and 0-9")]
    AdminName(String),
    /// The admin key file is missing.
    #[error("--admin-private-key: file `{0}` not found")]
    KeyMissing(PathBuf),
    /// The admin key file cannot be read.
    #[error("--admin-private-key: cannot read `{0}`: {1}")]
    KeyUnreadable(PathBuf, std::io::Error),
    /// The admin key file holds no usable key.
    #[error("--admin-private-key: `{0}`: {1}")]
    KeyInvalid(PathBuf, CryptoError),
    /// Bad welcome text.
    #[error("--welcome: {0}")]
    Welcome(String),
    /// Bad rate.
    #[error("--rate-limit: must be between 1 and 100000 messages per second")]
    Rate,
    /// Bad connection limit.
    #[error("--{0}: must be at least 1")]
    Limit(&'static str),
    /// The same port twice.
    #[error("--wsport: must differ from --port")]
    SamePort,
    /// The allow list cannot be used.
    #[error(transparent)]
    AllowList(#[from] AllowListError),
    /// The transcript file exists already.
    #[error("--transcription: `{0}` already exists; choose a new file (a transcript is never overwritten)")]
    TranscriptExists(PathBuf),
}

/// Limits that protect the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections per IP address (loopback exempt).
    pub max_per_ip: usize,
    /// Messages per second per connection.
    pub rate_per_sec: u32,
    /// Burst above the rate.
    pub burst: u32,
    /// Outgoing queue length per connection.
    pub queue_len: usize,
    /// Time allowed for a request head.
    pub head_timeout: Duration,
    /// Time allowed between the challenge and `join`.
    pub join_timeout: Duration,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_per_ip: 32,
            rate_per_sec: 20,
            burst: 40,
            queue_len: 1024,
            head_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the admin's key comes from.
#[derive(Debug, Clone)]
pub enum AdminKey {
    /// Loaded from a file at start.
    Loaded(Arc<Identity>),
    /// Made at start, in the background, with this many bits.
    Generate(usize),
}

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Main listening address (page and WebSocket).
    pub listen: SocketAddr,
    /// Extra WebSocket-only port.
    pub ws_port: Option<u16>,
    /// The admin's name.
    pub admin_name: String,
    /// The admin's key.
    pub admin_key: AdminKey,
    /// Welcome text for users who join.
    pub welcome: Option<String>,
    /// `@all` off for users.
    pub disable_all: bool,
    /// Users see and reach only the admin.
    pub only_admin: bool,
    /// Allow list file and its first contents.
    pub allow_list: Option<(PathBuf, Arc<AllowList>, Vec<String>)>,
    /// Transcript file (does not exist yet).
    pub transcript: Option<PathBuf>,
    /// Protective limits.
    pub limits: Limits,
}

impl Config {
    /// A configuration for `127.0.0.1:0` with defaults, for tests and embedding.
    pub fn local(admin_key: AdminKey) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            ws_port: None,
            admin_name: "ADMIN".into(),
            admin_key,
            welcome: None,
            disable_all: false,
            only_admin: false,
            allow_list: None,
            transcript: None,
            limits: Limits::default(),
        }
    }

    /// Validates the command line.
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        let admin_name = args
            .admin_nickname
            .clone()
            .unwrap_or_else(|| "ADMIN".into());
        if !protocol::valid_admin_name(&admin_name) {
            return Err(ConfigError::AdminName(admin_name));
        }
        let admin_key = match &args.admin_private_key {
            Some(path) => AdminKey::Loaded(Arc::new(load_key(path)?)),
            None => AdminKey::Generate(crate::crypto::DEFAULT_RSA_BITS),
        };
        if let Some(text) = &args.welcome {
            if text.trim().is_empty() {
                return Err(ConfigError::Welcome("the text is empty".into()));
            }
            if text.len() > protocol::MAX_TEXT {
                return Err(ConfigError::Welcome(format!(
                    "at most {} bytes",
                    protocol::MAX_TEXT
                )));
            }
        }
        let mut limits = Limits::default();
        if let Some(rate) = args.rate_limit {
            if !(1..=100_000).contains(&rate) {
                return Err(ConfigError::Rate);
            }
            limits.rate_per_sec = rate;
            limits.burst = rate.saturating_mul(2);
        }
        if let Some(n) = args.max_connections {
            limits.max_connections = n.max(1);
            if n == 0 {
                return Err(ConfigError::Limit("max-connections"));
            }
        }
        if let Some(n) = args.max_per_ip {
            if n == 0 {
                return Err(ConfigError::Limit("max-per-ip"));
            }
            limits.max_per_ip = n;
        }
        let port = args.port.unwrap_or(DEFAULT_PORT);
        if args.wsport.is_some_and(|w| w == port && port != 0) {
            return Err(ConfigError::SamePort);
        }
        let allow_list = match &args.allow_list {
            Some(path) => {
                let loaded = AllowList::load(path)?;
                Some((path.clone(), Arc::new(loaded.list), loaded.problems))
            }
            None => None,
        };
        if let Some(path) = &args.transcription {
            if path.exists() {
                return Err(ConfigError::TranscriptExists(path.clone()));
            }
        }
        Ok(Self {
            listen: SocketAddr::new(
                args.ip_address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                port,
            ),
            ws_port: args.wsport,
            admin_name,
            admin_key,
            welcome: args.welcome.clone(),
            disable_all: args.disable_all,
            only_admin: args.only_admin,
            allow_list,
            transcript: args.transcription.clone(),
            limits,
        })
    }
}

/// Loads a private key file, with errors that name the option.
pub fn load_key(path: &Path) -> Result<Identity, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::KeyMissing(path.into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(ConfigError::KeyInvalid(
                path.into(),
                CryptoError::NotRsaPrivateKey,
            ))
        }
        Err(e) => return Err(ConfigError::KeyUnreadable(path.into(), e)),
    };
    Identity::from_pem(&text).map_err(|e| ConfigError::KeyInvalid(path.into(), e))
}
