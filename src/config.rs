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
/// Default port with TLS.
pub const DEFAULT_TLS_PORT: u16 = 8443;

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
    /// Bad mailbox bound or grace period.
    #[error("--{0}: {1}")]
    Bound(&'static str, String),
    /// The same port twice.
    #[error("--wsport: must differ from --port")]
    SamePort,
    /// The allow list cannot be used.
    #[error(transparent)]
    AllowList(#[from] AllowListError),
    /// TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// TLS options that do not go together.
    #[error("{0}")]
    TlsOptions(&'static str),
    /// Tunnel options are incomplete or wrong.
    #[error(transparent)]
    Tunnel(#[from] crate::tunnel::TunnelError),
    /// Daemon mode lacks what it needs.
    #[error("--daemon: {0}")]
    Daemon(&'static str),
    /// A name that cannot be a host.
    #[error("--allowed-host: `{0}` is not a host name or IP address: {1}")]
    AllowedHost(String, &'static str),
    /// Panic stop options that do not go together.
    #[error("{0}")]
    Panic(&'static str),
    /// The transcript file exists already.
    #[error("--transcription: `{0}` already exists; choose a new file (a transcript is never overwritten)")]
    TranscriptExists(PathBuf),
}

/// Default per-endpoint mailbox bound (`--mailbox-bytes`).
pub const DEFAULT_MAILBOX_BYTES: usize = 1024 * 1024;
/// Default bound of all mailboxes together (`--mailbox-total`): a phone has little memory.
pub const DEFAULT_MAILBOX_TOTAL: usize = 32 * 1024 * 1024;
/// Smallest mailbox: it must hold the largest message with room to spare.
pub const MIN_MAILBOX_BYTES: usize = 2 * protocol::MAX_MESSAGE;
/// Largest mailbox bound accepted (per endpoint and in all).
pub const MAX_MAILBOX_BYTES: usize = 1 << 30;
/// Default grace period of an away member (`--away-grace`).
pub const DEFAULT_AWAY_GRACE: Duration = Duration::from_secs(600);
/// Longest grace period accepted.
pub const MAX_AWAY_GRACE_SECS: u64 = 7 * 24 * 3600;

/// Largest `--max-file-mb` accepted.
pub const MAX_FILE_MB: u64 = 1024;

/// Join attempts per second from all addresses together, by default (bursts of four times that).
pub const DEFAULT_JOIN_RATE: u32 = 100;

/// Limits that protect the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections per IP address (loopback exempt).
    pub max_per_ip: usize,
    /// Join attempts per second from all addresses together.
    pub join_rate: u32,
    /// Messages per second per connection.
    pub rate_per_sec: u32,
    /// Burst above the rate.
    pub burst: u32,
    /// Bytes of frames kept for one endpoint until it acknowledges them.
    pub mailbox_bytes: usize,
    /// Bytes of frames kept in all mailboxes together.
    pub mailbox_total: usize,
    /// How long a member without an endpoint is kept.
    pub away_grace: Duration,
    /// Time allowed for a request head after the first (keep-alive).
    pub head_timeout: Duration,
    /// Time allowed from accepting a connection to its first complete request head (TLS
    /// handshake included): much shorter, so that silent sockets do not hold slots.
    pub first_head_timeout: Duration,
    /// Time allowed between the challenge and `join`.
    pub join_timeout: Duration,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Largest file, in bytes of plaintext (`--max-file-mb`).
    pub max_file: u64,
    /// A file transfer with no chunk for this long is cancelled.
    pub file_idle: Duration,
    /// Who may create groups, and their limits (`--groups`, `--max-groups`,
    /// `--max-group-size`).
    pub groups: crate::hub::GroupSettings,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_per_ip: 32,
            join_rate: DEFAULT_JOIN_RATE,
            rate_per_sec: 20,
            burst: 40,
            mailbox_bytes: DEFAULT_MAILBOX_BYTES,
            mailbox_total: DEFAULT_MAILBOX_TOTAL,
            away_grace: DEFAULT_AWAY_GRACE,
            head_timeout: Duration::from_secs(10),
            first_head_timeout: Duration::from_secs(4),
            join_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_file: protocol::DEFAULT_MAX_FILE,
            file_idle: Duration::from_secs(protocol::FILE_IDLE_SECS),
            groups: crate::hub::GroupSettings::default(),
        }
    }
}

fn bounds_from_args(args: &Args, limits: &mut Limits) -> Result<(), ConfigError> {
    let range = |name: &'static str, v: usize| {
        if (MIN_MAILBOX_BYTES..=MAX_MAILBOX_BYTES).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::Bound(
                name,
                format!("must be between {MIN_MAILBOX_BYTES} and {MAX_MAILBOX_BYTES} bytes"),
            ))
        }
    };
    if let Some(n) = args.mailbox_bytes {
        limits.mailbox_bytes = range("mailbox-bytes", n)?;
    }
    if let Some(n) = args.mailbox_total {
        limits.mailbox_total = range("mailbox-total", n)?;
    }
    if limits.mailbox_total < limits.mailbox_bytes {
        return Err(ConfigError::Bound(
            "mailbox-total",
            format!(
                "must be at least --mailbox-bytes ({} bytes)",
                limits.mailbox_bytes
            ),
        ));
    }
    if let Some(mb) = args.max_file_mb {
        if !(1..=MAX_FILE_MB).contains(&mb) {
            return Err(ConfigError::Bound(
                "max-file-mb",
                format!("must be between 1 and {MAX_FILE_MB} (MiB)"),
            ));
        }
        limits.max_file = mb << 20;
    }
    if let Some(policy) = &args.groups {
        limits.groups.policy = protocol::GroupPolicy::parse(policy).ok_or(ConfigError::Bound(
            "groups",
            "must be users, admin or off".into(),
        ))?;
    }
    if let Some(n) = args.max_groups {
        if !(1..=protocol::MAX_GROUPS_BOUND).contains(&n) {
            return Err(ConfigError::Bound(
                "max-groups",
                format!("must be between 1 and {}", protocol::MAX_GROUPS_BOUND),
            ));
        }
        limits.groups.limits.max_groups = n;
    }
    if let Some(n) = args.max_group_size {
        if !(2..=protocol::MAX_GROUP_SIZE_BOUND).contains(&n) {
            return Err(ConfigError::Bound(
                "max-group-size",
                format!("must be between 2 and {}", protocol::MAX_GROUP_SIZE_BOUND),
            ));
        }
        limits.groups.limits.max_group_size = n;
    }
    if let Some(secs) = args.away_grace {
        if secs > MAX_AWAY_GRACE_SECS {
            return Err(ConfigError::Bound(
                "away-grace",
                format!("at most {MAX_AWAY_GRACE_SECS} seconds (a week)"),
            ));
        }
        limits.away_grace = Duration::from_secs(secs);
    }
    Ok(())
}

/// `--files-dir`, or a `dyspatcher-files` folder next to the transcript, or in the current one.
fn files_dir(args: &Args) -> PathBuf {
    let default = crate::client::files::DEFAULT_DIR;
    match (&args.files_dir, &args.transcription) {
        (Some(dir), _) => dir.clone(),
        (None, Some(t)) => t
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| default.into(), |p| p.join(default)),
        (None, None) => default.into(),
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
    /// Clients may keep their identity and state on their device (no `--no-remember`).
    pub remember: bool,
    /// Allow list file and its first contents.
    pub allow_list: Option<(PathBuf, Arc<AllowList>, Vec<String>)>,
    /// Transcript file (does not exist yet).
    pub transcript: Option<PathBuf>,
    /// Where the admin's prompt saves the files it receives.
    pub files_dir: PathBuf,
    /// Protective limits.
    pub limits: Limits,
    /// TLS, if the port serves https and wss.
    pub tls: Option<Tls>,
    /// The SSH reverse tunnel, if asked for (its forwards are filled in at start).
    pub tunnel: Option<crate::tunnel::TunnelSettings>,
    /// The port the tunnel opens on the SSH server (default: the listening port).
    pub tunnel_remote_port: Option<u16>,
    /// Run in the background with this pid file.
    pub daemon: Option<PathBuf>,
    /// Names besides its own under which the server may be addressed (`--allowed-host`).
    pub allowed_hosts: Vec<crate::http::HostName>,
    /// The panic stop and what it erases, with `--panic`.
    pub panic: Option<crate::panic::PanicSettings>,
}

/// The TLS setup of the listener.
#[derive(Clone)]
pub struct Tls {
    /// The rustls configuration.
    pub server: Arc<rustls::ServerConfig>,
    /// The generated certificate, when self-signed (its fingerprint is printed at start).
    pub self_signed: Option<crate::tls::SelfSigned>,
    /// Where a self-signed certificate is kept, and whether it was reused from an earlier start.
    pub kept_in: Option<(PathBuf, bool)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("self_signed", &self.self_signed.is_some())
            .finish()
    }
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
            remember: true,
            allow_list: None,
            transcript: None,
            files_dir: crate::client::files::DEFAULT_DIR.into(),
            limits: Limits::default(),
            tls: None,
            tunnel: None,
            tunnel_remote_port: None,
            daemon: None,
            allowed_hosts: Vec::new(),
            panic: None,
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
            if n == 0 {
                return Err(ConfigError::Limit("max-connections"));
            }
            limits.max_connections = n;
        }
        if let Some(n) = args.max_per_ip {
            if n == 0 {
                return Err(ConfigError::Limit("max-per-ip"));
            }
            limits.max_per_ip = n;
        }
        if let Some(n) = args.join_rate {
            if n == 0 {
                return Err(ConfigError::Limit("join-rate"));
            }
            limits.join_rate = n;
        }
        bounds_from_args(args, &mut limits)?;
        let ip = args.ip_address.unwrap_or(IpAddr::V4(if args.lan {
            Ipv4Addr::UNSPECIFIED
        } else {
            Ipv4Addr::LOCALHOST
        }));
        let tls = tls_from_args(args, ip)?;
        let port = args.port.unwrap_or(if tls.is_some() {
            DEFAULT_TLS_PORT
        } else {
            DEFAULT_PORT
        });
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
        let tunnel = crate::tunnel::validate(
            args.sshpfw_ip_address.as_deref(),
            args.sshpfw_port,
            args.sshpfw_user.as_deref(),
            args.sshpfw_keyfile.as_deref(),
        )?;
        let daemon = if args.daemon {
            if args.transcription.is_none() {
                return Err(ConfigError::Daemon(
                    "needs --transcription FILE: in the background the transcript is where everything goes",
                ));
            }
            if args.admin_private_key.is_none() {
                return Err(ConfigError::Daemon(
                    "needs --admin-private-key FILE, so that the admin can log in from a browser",
                ));
            }
            Some(
                args.pid_file
                    .clone()
                    .unwrap_or_else(|| default_pid_file(port)),
            )
        } else {
            None
        };
        let panic = panic_from_args(args, daemon.as_ref())?;
        Ok(Self {
            listen: SocketAddr::new(ip, port),
            ws_port: args.wsport,
            admin_name,
            admin_key,
            welcome: args.welcome.clone(),
            disable_all: args.disable_all,
            only_admin: args.only_admin,
            remember: !args.no_remember,
            allow_list,
            transcript: args.transcription.clone(),
            files_dir: files_dir(args),
            limits,
            tls,
            tunnel,
            tunnel_remote_port: args.sshpfw_remote_port,
            daemon,
            allowed_hosts: args
                .allowed_host
                .iter()
                .map(|name| allowed_host(name))
                .collect::<Result<_, _>>()?,
            panic,
        })
    }
}

/// `--panic` and `--panic-deletes-key`: what the panic stop erases.
fn panic_from_args(
    args: &Args,
    pid_file: Option<&PathBuf>,
) -> Result<Option<crate::panic::PanicSettings>, ConfigError> {
    if !args.panic {
        return match args.panic_deletes_key {
            true => Err(ConfigError::Panic("--panic-deletes-key: needs --panic")),
            false => Ok(None),
        };
    }
    let admin_key = match (&args.admin_private_key, args.panic_deletes_key) {
        (Some(path), true) => Some(path.clone()),
        (None, true) => {
            return Err(ConfigError::Panic(
                "--panic-deletes-key: needs --admin-private-key FILE (a key made at start is never written anywhere)",
            ))
        }
        (_, false) => None,
    };
    Ok(Some(crate::panic::PanicSettings {
        admin_key,
        tls_dir: state_dir().map(|d| d.join("tls")),
        pid_file: pid_file.cloned(),
    }))
}

/// Checks one `--allowed-host`: a bare name or address, so that a URL pasted by mistake is
/// refused with a reason rather than never matching.
fn allowed_host(name: &str) -> Result<crate::http::HostName, ConfigError> {
    let wrong = |why| ConfigError::AllowedHost(name.to_string(), why);
    if name.contains("://") {
        return Err(wrong("give the name alone, without a scheme"));
    }
    if name.contains('/') {
        return Err(wrong("give the name alone, without a path"));
    }
    match crate::http::HostName::parse(name) {
        Ok(host) => Ok(host),
        Err(_) if crate::http::split_authority(name).is_ok_and(|(_, p)| p.is_some()) => Err(wrong(
            "give the name alone, without a port (every port is allowed)",
        )),
        Err(why) => Err(wrong(why)),
    }
}

fn tls_from_args(args: &Args, ip: IpAddr) -> Result<Option<Tls>, ConfigError> {
    match (&args.ssl_certificate, &args.ssl_key) {
        (Some(cert), Some(key)) => {
            if args.ssl_self_signed {
                return Err(ConfigError::TlsOptions(
                    "--ssl-self-signed: not together with --ssl-certificate; choose one",
                ));
            }
            let server = crate::tls::load_server_config(cert, key, args.ssl_cabundle.as_deref())?;
            Ok(Some(Tls {
                server,
                self_signed: None,
                kept_in: None,
            }))
        }
        (Some(_), None) => Err(ConfigError::TlsOptions(
            "--ssl-certificate: needs --ssl-key too",
        )),
        (None, Some(_)) => Err(ConfigError::TlsOptions(
            "--ssl-key: needs --ssl-certificate too",
        )),
        (None, None) if args.ssl_cabundle.is_some() => Err(ConfigError::TlsOptions(
            "--ssl-cabundle: needs --ssl-certificate and --ssl-key",
        )),
        (None, None) if args.ssl_self_signed || args.lan => {
            let names = crate::onboard::certificate_names(ip);
            let (server, self_signed, kept_in) = match state_dir() {
                Some(dir) => {
                    let dir = dir.join("tls");
                    let (server, cert, reused) = crate::tls::persistent_self_signed(&names, &dir)?;
                    (server, cert, Some((dir, reused)))
                }
                None => {
                    let (server, cert) = crate::tls::self_signed(&names)?;
                    (server, cert, None)
                }
            };
            Ok(Some(Tls {
                server,
                self_signed: Some(self_signed),
                kept_in,
            }))
        }
        (None, None) => Ok(None),
    }
}

/// Where dyspatcher keeps what must survive a restart (the self-signed certificate):
/// `$DYSPATCHER_HOME`, else `$HOME/.dyspatcher`.
pub fn state_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    var("DYSPATCHER_HOME").or_else(|| var("HOME").map(|h| h.join(".dyspatcher")))
}

/// Where the pid file goes when `--pid-file` is not given: a per-user runtime or temporary
/// folder. Termux sets `$TMPDIR`; Android has no `/tmp` at all, so there the fallbacks are
/// Termux's `$PREFIX/tmp` and then `$HOME`.
pub fn default_pid_file(port: u16) -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
    };
    let dir = var("XDG_RUNTIME_DIR").or_else(|| var("TMPDIR"));
    #[cfg(target_os = "android")]
    let dir = dir
        .or_else(|| var("PREFIX").map(|p| p.join("tmp")))
        .or_else(|| var("HOME"));
    let dir = dir.unwrap_or_else(|| PathBuf::from("/tmp"));
    dir.join(format!("dyspatcher-{port}.pid"))
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
