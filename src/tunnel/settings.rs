//! The tunnel's settings: checking the four `--sshpfw-*` options, the ssh command line they make,
//! and the public address people use.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TunnelSettings {
        let mut s = TunnelSettings::new("example.org", 2222, "chat", Path::new("/k/id"));
        s.forwards = vec![(8443, "127.0.0.1".into(), 8443), (9000, "::1".into(), 9001)];
        s
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
}
