//! SSH reverse tunnel: runs `ssh -N -R …` so that the chat is reachable through a public SSH
//! server, restarts it with capped exponential backoff whenever it dies, reports every change of
//! state through a callback, and ends it on [`Tunnel::stop`] or drop.
//!
//! The supervisor is one plain thread per tunnel: `std::process` is all it needs, and the async
//! runtime never waits on it.
//!
//! The tunnel counts as [`TunnelPhase::Up`] when ssh says that the SSH server accepted every
//! remote forward: ssh runs with `LogLevel=DEBUG1`, and its `remote forward success` lines are
//! read from stderr (debug lines are used for nothing else and never kept). An ssh that does not
//! say so (another implementation, or `LogLevel` overridden in
//! [`TunnelSettings::extra_options`]) counts as up once it has run for
//! [`TunnelSettings::up_after`] without exiting: with `ExitOnForwardFailure=yes`, ssh exits as
//! soon as authentication or a forward is refused.

mod supervisor;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use supervisor::Shared;

/// Where and how to open the tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelSettings {
    /// The SSH server (`--sshpfw-ip-address`): a name or an IP address.
    pub host: String,
    /// Its SSH port (`--sshpfw-port`).
    pub port: u16,
    /// The user to log in as (`--sshpfw-user`).
    pub user: String,
    /// The private key to log in with (`--sshpfw-keyfile`).
    pub keyfile: PathBuf,
    /// Forwards as (remote port, local host, local port): connections to the SSH server's
    /// remote port reach local host:port. The first one gives [`TunnelSettings::public_url`].
    /// The remote port is reachable from the internet only if the SSH server's `sshd_config`
    /// has `GatewayPorts yes` or `GatewayPorts clientspecified`; otherwise only from the server.
    pub forwards: Vec<(u16, String, u16)>,
    /// The ssh program (default `ssh`, looked up in `PATH`).
    pub ssh_program: PathBuf,
    /// Extra ssh arguments, placed before the built-in ones: ssh keeps the first value it sees
    /// for an option, so `-o Name=value` here overrides the built-in `-o` options.
    pub extra_options: Vec<String>,
    /// The first and the largest delay before a restart (default 1 s and 60 s); the delay
    /// doubles after every failed run.
    pub backoff: (Duration, Duration),
    /// How long ssh must run without exiting to count as up when it has not confirmed its
    /// forwards (default 10 s; see the module documentation).
    pub up_after: Duration,
    /// A run that lasted this long (default 30 s) resets the delay to its first value.
    pub stable_after: Duration,
}

impl TunnelSettings {
    /// Settings with no forwards yet and the default program, options and timings.
    pub fn new(host: &str, port: u16, user: &str, keyfile: &Path) -> TunnelSettings {
        TunnelSettings {
            host: host.to_string(),
            port,
            user: user.to_string(),
            keyfile: keyfile.to_path_buf(),
            forwards: Vec::new(),
            ssh_program: PathBuf::from("ssh"),
            extra_options: Vec::new(),
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
            up_after: Duration::from_secs(10),
            stable_after: Duration::from_secs(30),
        }
    }

    /// The arguments given to ssh (the program itself excluded).
    pub fn ssh_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = self.extra_options.iter().map(OsString::from).collect();
        args.push("-N".into());
        for option in [
            "BatchMode=yes",
            "ExitOnForwardFailure=yes",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=3",
            "StrictHostKeyChecking=accept-new",
            "IdentitiesOnly=yes",
            "ConnectTimeout=20",
            // For the `remote forward success` lines that tell when the tunnel is up.
            "LogLevel=DEBUG1",
        ] {
            args.push("-o".into());
            args.push(option.into());
        }
        args.push("-i".into());
        args.push(self.keyfile.clone().into());
        args.push("-p".into());
        args.push(self.port.to_string().into());
        for (remote, local_host, local_port) in &self.forwards {
            args.push("-R".into());
            // `*`: all interfaces if the server's GatewayPorts is `yes` or `clientspecified`;
            // with `no` (the default) sshd binds its loopback interface instead, without error.
            args.push(format!("*:{remote}:{}:{local_port}", bracket_ipv6(local_host)).into());
        }
        args.push("--".into());
        args.push(format!("{}@{}", self.user, self.host).into());
        args
    }

    /// The address people use from the internet: `http(s)://HOST:REMOTE/` for the first
    /// forward, without the port when it is the scheme's default.
    pub fn public_url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        let host = bracket_ipv6(&self.host);
        match self.forwards.first() {
            Some((remote, ..)) if *remote != if tls { 443 } else { 80 } => {
                format!("{scheme}://{host}:{remote}/")
            }
            _ => format!("{scheme}://{host}/"),
        }
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// A tunnel option that cannot work, worded for the person who typed the command line.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Some but not all of the four SSH forwarding options were given.
    #[error("SSH forwarding needs all four of --sshpfw-ip-address, --sshpfw-port, \
             --sshpfw-user and --sshpfw-keyfile; missing: {}", missing.join(", "))]
    Incomplete {
        /// The options not given.
        missing: Vec<&'static str>,
    },
    /// The host is empty or could be mistaken for an ssh option.
    #[error("--sshpfw-ip-address: `{0}` is not a host name or IP address")]
    BadHost(String),
    /// The user is empty or could be mistaken for an ssh option.
    #[error("--sshpfw-user: `{0}` is not a user name")]
    BadUser(String),
    /// Port 0 was given.
    #[error("--sshpfw-port: 0 is not a port; the SSH server usually listens on 22")]
    BadPort,
    /// The key file does not exist.
    #[error("--sshpfw-keyfile: file `{}` not found", .0.display())]
    KeyfileNotFound(PathBuf),
    /// The key file cannot be read.
    #[error("--sshpfw-keyfile: cannot read `{}`: {reason}", path.display())]
    KeyfileUnreadable {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// ssh refuses private keys that others can read.
    #[error("--sshpfw-keyfile: `{}` can be read by others (mode {mode:03o}) and ssh refuses \
             such keys; run `chmod 600 {}`", path.display(), path.display())]
    KeyfileTooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The settings hold no forward.
    #[error("the SSH tunnel has no port to forward")]
    NoForwards,
    /// The supervisor thread could not be started.
    #[error("cannot start the SSH tunnel's supervisor: {0}")]
    Thread(#[source] io::Error),
}

/// Checks the four SSH forwarding options: all or none must be given, and the key file must be a
/// readable private file. Returns settings without forwards (the caller adds its ports), with
/// the key file made absolute (a daemon changes its directory), or `None` when no option was
/// given.
pub fn validate(
    ip_address: Option<&str>,
    port: Option<u16>,
    user: Option<&str>,
    keyfile: Option<&Path>,
) -> Result<Option<TunnelSettings>, TunnelError> {
    let (Some(host), Some(port), Some(user), Some(keyfile)) = (ip_address, port, user, keyfile)
    else {
        let missing: Vec<&'static str> = [
            (ip_address.is_none(), "--sshpfw-ip-address"),
            (port.is_none(), "--sshpfw-port"),
            (user.is_none(), "--sshpfw-user"),
            (keyfile.is_none(), "--sshpfw-keyfile"),
        ]
        .into_iter()
        .filter_map(|(absent, name)| absent.then_some(name))
        .collect();
        if missing.len() == 4 {
            return Ok(None);
        }
        return Err(TunnelError::Incomplete { missing });
    };
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if !plain(host) {
        return Err(TunnelError::BadHost(host.to_string()));
    }
    if !plain(user) || user.contains('@') {
        return Err(TunnelError::BadUser(user.to_string()));
    }
    if port == 0 {
        return Err(TunnelError::BadPort);
    }
    check_keyfile(keyfile)?;
    let keyfile = std::fs::canonicalize(keyfile).map_err(|e| TunnelError::KeyfileUnreadable {
        path: keyfile.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Some(TunnelSettings::new(host, port, user, &keyfile)))
}

fn check_keyfile(path: &Path) -> Result<(), TunnelError> {
    let unreadable = |reason: String| TunnelError::KeyfileUnreadable {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => TunnelError::KeyfileNotFound(path.to_path_buf()),
        _ => unreadable(e.to_string()),
    })?;
    if !meta.is_file() {
        return Err(unreadable("not a regular file".to_string()));
    }
    std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    // ssh only checks keys owned by its own user; /proc/self belongs to ours.
    let ours = std::fs::metadata("/proc/self").map(|m| m.uid());
    let mode = meta.permissions().mode() & 0o777;
    if ours.is_ok_and(|uid| uid == meta.uid()) && mode & 0o077 != 0 {
        return Err(TunnelError::KeyfileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// What the tunnel is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunnelPhase {
    /// ssh was just started.
    Starting,
    /// The SSH server accepted every forward (or ssh has run for
    /// [`TunnelSettings::up_after`] without exiting and without saying).
    Up,
    /// ssh exited (or could not be started).
    Exited {
        /// How: `status 255`, `signal 9`, or why it could not start.
        status: String,
        /// The last meaningful line ssh wrote on stderr, if any.
        reason: Option<String>,
    },
    /// ssh will be started again after `delay`.
    Restarting {
        /// The wait before the next start.
        delay: Duration,
    },
    /// The tunnel was stopped and ssh has ended.
    Stopped,
}

/// A snapshot of the tunnel, for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelState {
    /// What the tunnel is doing.
    pub phase: TunnelPhase,
    /// The running ssh process, if any.
    pub pid: Option<u32>,
    /// When the tunnel entered this phase.
    pub since: SystemTime,
    /// How many times ssh was started again after the first run.
    pub restarts: u32,
    /// Why the last run ended, if one did (kept while later runs go on).
    pub last_error: Option<String>,
}

impl fmt::Display for TunnelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.phase {
            TunnelPhase::Starting => write!(f, "ssh tunnel: starting")?,
            TunnelPhase::Up => write!(f, "ssh tunnel: up")?,
            TunnelPhase::Exited { status, reason } => {
                write!(f, "ssh tunnel: ssh exited ({status})")?;
                if let Some(reason) = reason {
                    write!(f, ": {reason}")?;
                    if reason.contains("remote port forwarding failed") {
                        write!(
                            f,
                            " (is another ssh, perhaps left from an earlier run, holding it?)"
                        )?;
                    }
                }
            }
            TunnelPhase::Restarting { delay } => {
                write!(f, "ssh tunnel: restarting in {}", human(*delay))?
            }
            TunnelPhase::Stopped => write!(f, "ssh tunnel: stopped")?,
        }
        let mut details = Vec::new();
        if let Some(pid) = self.pid {
            details.push(format!("pid {pid}"));
        }
        if self.restarts > 0 {
            details.push(format!("{} restarts", self.restarts));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A supervised SSH reverse tunnel. Dropping it stops ssh.
///
/// ssh is ended on [`Tunnel::stop`], on drop and when the supervisor panics; it is not when this
/// whole process is killed with SIGKILL or aborts (tying ssh to our life would need
/// `PR_SET_PDEATHSIG`, i.e. unsafe code). Such a leftover ssh keeps the remote port, so the next
/// tunnel reports `remote port forwarding failed` (with a hint) until it is ended.
pub struct Tunnel {
    settings: TunnelSettings,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Tunnel {
    /// Starts ssh in a supervisor thread. `on_change` is called from that thread with every new
    /// state, in order; it should be quick (e.g. send the state into a channel).
    pub fn start(
        settings: TunnelSettings,
        on_change: impl Fn(TunnelState) + Send + 'static,
    ) -> Result<Tunnel, TunnelError> {
        if settings.forwards.is_empty() {
            return Err(TunnelError::NoForwards);
        }
        let (shared, thread) = supervisor::spawn(settings.clone(), Box::new(on_change))
            .map_err(TunnelError::Thread)?;
        Ok(Tunnel {
            settings,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The current state, for a `/tunnel` command.
    pub fn state(&self) -> TunnelState {
        self.shared.state()
    }

    /// The address people use from the internet (see [`TunnelSettings::public_url`]).
    pub fn public_url(&self, tls: bool) -> String {
        self.settings.public_url(tls)
    }

    /// The settings the tunnel runs with.
    pub fn settings(&self) -> &TunnelSettings {
        &self.settings
    }

    /// Ends ssh (SIGTERM, then SIGKILL after 2 s) and the supervisor, and waits for both.
    /// Blocks for at most about 2 s; from async code, call it through `smol::unblock`.
    /// Calling it again does nothing.
    pub fn stop(&self) {
        self.shared.request_stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // A panic in the supervisor has already been reported by the panic hook, and its
            // child guard has killed ssh: nothing is left to do.
            let _ = thread.join();
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("settings", &self.settings)
            .field("state", &self.state())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TunnelSettings {
        let mut s = TunnelSettings::new("example.org", 2222, "chat", Path::new("/k/id"));
        s.forwards = vec![(8443, "127.0.0.1".into(), 8443), (9000, "::1".into(), 9001)];
        s
    }

    #[test]
    fn handle_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Tunnel>();
    }

    #[test]
    fn ssh_command_line() {
        let mut s = settings();
        s.extra_options = vec!["-o".into(), "StrictHostKeyChecking=yes".into()];
        let args: Vec<String> = s
            .ssh_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let line = args.join(" ");
        assert!(
            line.starts_with("-o StrictHostKeyChecking=yes -N -o BatchMode=yes"),
            "{line}"
        );
        assert!(line.contains(" -o ExitOnForwardFailure=yes "), "{line}");
        assert!(
            line.ends_with(
                "-i /k/id -p 2222 -R *:8443:127.0.0.1:8443 -R *:9000:[::1]:9001 -- chat@example.org"
            ),
            "{line}"
        );
    }

    #[test]
    fn public_url_uses_the_first_forward() {
        let mut s = settings();
        assert_eq!(s.public_url(true), "https://example.org:8443/");
        assert_eq!(s.public_url(false), "http://example.org:8443/");
        s.forwards[0].0 = 443;
        s.host = "2001:db8::1".into();
        assert_eq!(s.public_url(true), "https://[2001:db8::1]/");
        assert_eq!(s.public_url(false), "http://[2001:db8::1]:443/");
    }

    #[test]
    fn state_reads_well() {
        let mut state = TunnelState {
            phase: TunnelPhase::Exited {
                status: "status 255".into(),
                reason: Some("Connection refused".into()),
            },
            pid: None,
            since: SystemTime::now(),
            restarts: 2,
            last_error: None,
        };
        assert_eq!(
            state.to_string(),
            "ssh tunnel: ssh exited (status 255): Connection refused (2 restarts)"
        );
        state.phase = TunnelPhase::Restarting {
            delay: Duration::from_secs(4),
        };
        state.restarts = 0;
        assert_eq!(state.to_string(), "ssh tunnel: restarting in 4 s");
        state.phase = TunnelPhase::Up;
        state.pid = Some(42);
        assert_eq!(state.to_string(), "ssh tunnel: up (pid 42)");
    }
}
