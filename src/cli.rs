//! The command line, as Dyspatcher spells it. [`crate::config`] turns it into a validated `Config`.

use std::net::IpAddr;
use std::path::PathBuf;

use argh::FromArgs;

/// dyspatcher: a private, end-to-end encrypted chat service. People chat from any browser; the
/// server relays ciphertext it cannot read; the admin chats and administers from this prompt.
#[derive(FromArgs, Debug, Default)]
pub struct Args {
    /// address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
    #[argh(option, short = 'i')]
    pub ip_address: Option<IpAddr>,
    /// port for the page and the WebSocket (default 8080, or 8443 with TLS; 0 picks a free one)
    #[argh(option, short = 'p')]
    pub port: Option<u16>,
    /// optional extra WebSocket-only port (Dyspatcher compatibility; the main port serves /ws too)
    #[argh(option, short = 'w')]
    pub wsport: Option<u16>,
    /// admin name, 4-15 characters A-Z and 0-9 (default ADMIN)
    #[argh(option, short = 'n')]
    pub admin_nickname: Option<String>,
    /// admin private key (PEM, PKCS#8 or PKCS#1); without it a fresh 4096-bit key is made
    #[argh(option)]
    pub admin_private_key: Option<PathBuf>,
    /// message sent (end-to-end encrypted, from the admin) to every user who joins
    #[argh(option)]
    pub welcome: Option<String>,
    /// users cannot send to @all (the admin always can)
    #[argh(switch)]
    pub disable_all: bool,
    /// users see and write only to the admin; implies --disable-all for users
    #[argh(switch)]
    pub only_admin: bool,
    /// TLS certificate (PEM); serves https and wss on the same port (default port 8443)
    #[argh(option)]
    pub ssl_certificate: Option<PathBuf>,
    /// TLS private key (PEM) for --ssl-certificate
    #[argh(option)]
    pub ssl_key: Option<PathBuf>,
    /// CA bundle (PEM) completing the certificate's chain
    #[argh(option)]
    pub ssl_cabundle: Option<PathBuf>,
    /// make a self-signed certificate for the addresses served and print its fingerprint
    #[argh(switch)]
    pub ssl_self_signed: bool,
    /// one flag for a LAN chat: listen on every interface with a self-signed certificate
    #[argh(switch)]
    pub lan: bool,
    /// CSV file of `keyid,name` rows: only these keys may join, under these names
    #[argh(option)]
    pub allow_list: Option<PathBuf>,
    /// file for a transcript of what the admin sees (must not exist)
    #[argh(option)]
    pub transcription: Option<PathBuf>,
    /// folder where files sent to the admin are saved (default: dyspatcher-files next to the
    /// transcript, or in the current directory); names are sanitised, nothing is overwritten
    #[argh(option)]
    pub files_dir: Option<PathBuf>,
    /// run in the background (needs --transcription and --admin-private-key)
    #[argh(switch, short = 'd')]
    pub daemon: bool,
    /// pid file in daemon mode (default $XDG_RUNTIME_DIR, $TMPDIR or /tmp, dyspatcher-PORT.pid)
    #[argh(option)]
    pub pid_file: Option<PathBuf>,
    /// a further name (or address) under which browsers reach this server, e.g. a proxy's or a
    /// router's; repeatable. Its own addresses, localhost and its certificate's names need none
    #[argh(option)]
    pub allowed_host: Vec<String>,
    /// SSH server for a reverse tunnel that makes the chat reachable from the internet
    #[argh(option)]
    pub sshpfw_ip_address: Option<String>,
    /// SSH server port for the tunnel
    #[argh(option)]
    pub sshpfw_port: Option<u16>,
    /// user on the SSH server for the tunnel
    #[argh(option)]
    pub sshpfw_user: Option<String>,
    /// port to open on the SSH server (default: the same as --port)
    #[argh(option)]
    pub sshpfw_remote_port: Option<u16>,
    /// private key file for the tunnel's SSH login
    #[argh(option)]
    pub sshpfw_keyfile: Option<PathBuf>,
    /// messages per second each connection may send (default 20; bursts of twice that)
    #[argh(option)]
    pub rate_limit: Option<u32>,
    /// most connections at once (default 1000)
    #[argh(option)]
    pub max_connections: Option<usize>,
    /// most connections from one IP address (default 32; loopback is exempt)
    #[argh(option)]
    pub max_per_ip: Option<usize>,
    /// join attempts per second from all addresses together (default 100, bursts of 400; each
    /// address other than loopback: 1 a second, bursts of 10)
    #[argh(option)]
    pub join_rate: Option<u32>,
    /// seconds a member whose connection ended is kept (mailbox, name, keys) before it leaves
    /// (default 600; 0 leaves at once)
    #[argh(option)]
    pub away_grace: Option<u64>,
    /// bytes of messages kept for one member until its device acknowledges them (default 1048576)
    #[argh(option)]
    pub mailbox_bytes: Option<usize>,
    /// bytes of messages kept for all members together (default 33554432)
    #[argh(option)]
    pub mailbox_total: Option<usize>,
    /// largest file members may send, in MiB (default 16; files are relayed in chunks, never
    /// stored on disk)
    #[argh(option)]
    pub max_file_mb: Option<u64>,
    /// who may create private groups: users (anyone, the default), admin, or off
    #[argh(option)]
    pub groups: Option<String>,
    /// most groups one member may be in (default 16)
    #[argh(option)]
    pub max_groups: Option<usize>,
    /// most members of one group, its owner included (default 64, at most 256)
    #[argh(option)]
    pub max_group_size: Option<usize>,
    /// tell browsers to store nothing on the device (no key, no name, no history)
    #[argh(switch)]
    pub no_remember: bool,
    /// enable the panic stop: `/panic` or SIGUSR1 closes every connection at once, drops all
    /// members and mailboxes, erases the transcript and the self-signed TLS state, and exits
    #[argh(switch)]
    pub panic: bool,
    /// with --panic: erase the --admin-private-key file too
    #[argh(switch)]
    pub panic_deletes_key: bool,
    /// print the version and exit
    #[argh(switch, short = 'v')]
    pub version: bool,
    /// a subcommand (default: run the server)
    #[argh(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    /// Chat from the terminal.
    Connect(ConnectArgs),
    /// Measure a server with simulated members.
    Bench(crate::bench::BenchArgs),
    /// Check a transcript's hash chain.
    VerifyTranscript(VerifyTranscriptArgs),
}

/// check a transcript's hash chain: exit 0 and "N lines, chain intact", or exit 1 and the first
/// line that was altered, removed, reordered or cut (exit 2: the file cannot be read)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "verify-transcript")]
pub struct VerifyTranscriptArgs {
    /// the transcript file
    #[argh(positional)]
    pub file: PathBuf,
}

/// join a dyspatcher chat from the terminal: incoming messages are printed; type `@name text`
/// or `@all text` to send, `/users` to list members, `/quit` to leave
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "connect")]
pub struct ConnectArgs {
    /// the chat's WebSocket URL, e.g. ws://127.0.0.1:8080/ws
    #[argh(positional)]
    pub url: String,
    /// your name, 4-15 characters a-z and 0-9
    #[argh(option)]
    pub name: String,
    /// your private key (PEM); without it a fresh key is made for this session
    #[argh(option)]
    pub key: Option<PathBuf>,
    /// bits of the fresh key when --key is not given (default 2048)
    #[argh(option, default = "2048")]
    pub bits: usize,
    /// for wss://: the server certificate's SHA-256 fingerprint, as the server prints it
    #[argh(option)]
    pub fingerprint: Option<String>,
    /// for wss://: a CA certificate file (PEM) to verify the server with
    #[argh(option)]
    pub ca_file: Option<PathBuf>,
    /// folder where received files are saved (default: dyspatcher-files in the current
    /// directory); names are sanitised and nothing is overwritten
    #[argh(option)]
    pub files_dir: Option<PathBuf>,
}
