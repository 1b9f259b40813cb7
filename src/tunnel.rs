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

mod settings;
mod supervisor;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use settings::{validate, TunnelError, TunnelSettings};
use supervisor::Shared;

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

    #[test]
    fn handle_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Tunnel>();
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
