//! What a run asks of the server and of this machine: the rate limit (the server's default unless
//! the scenario sends or acknowledges faster than it allows), and an open file for every member.

use super::{BenchError, Mode, Plan};
use crate::client::ACK_EVERY;

/// The rate limit a started server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// The server's own default: the scenario stays within it.
    Default(u32),
    /// Raised, because one connection must send `need` frames a second (its messages and its
    /// acknowledgements) and the default allows fewer.
    Raised {
        /// Messages per second per connection given with `--rate-limit` (bursts of twice that).
        limit: u32,
        /// Frames a second the busiest connection sends.
        need: u32,
        /// The server's default.
        default: u32,
    },
}

impl RateLimit {
    /// The rate limit for `plan`: the default if the busiest connection stays within it, else
    /// twice what that connection sends (a sender that fell behind its schedule catches up in a
    /// burst, and bursts are twice the rate).
    pub fn for_plan(plan: &Plan) -> Self {
        let default = crate::config::Limits::default();
        let need = busiest_connection(plan);
        if need <= default.rate_per_sec {
            Self::Default(default.rate_per_sec)
        } else {
            Self::Raised {
                limit: need.saturating_mul(2),
                need,
                default: default.rate_per_sec,
            }
        }
    }

    /// The `--rate-limit` to pass, if not the default.
    pub fn flag(&self) -> Option<u32> {
        match self {
            Self::Default(_) => None,
            Self::Raised { limit, .. } => Some(*limit),
        }
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default(rate) => write!(
                f,
                "the server's default, {rate} messages/s per connection (bursts of {})",
                rate * 2
            ),
            Self::Raised {
                limit,
                need,
                default,
            } => write!(
                f,
                "raised to {limit} messages/s per connection: the busiest member sends about \
                 {need} frames/s (its messages and acknowledgements), over the default {default}"
            ),
        }
    }
}

/// Frames a second the busiest member writes: a sender's share of the messages, and one `ack`
/// for every [`ACK_EVERY`] frames it receives (at least one a second while frames come).
fn busiest_connection(plan: &Plan) -> u32 {
    let a = &plan.args;
    if a.seconds == 0 {
        return 0;
    }
    let senders = plan.senders.max(1) as u64;
    let rate = u64::from(a.rate);
    let sends = rate.div_ceil(senders);
    // Every member receives every @all but its own; a direct message goes to one member, and
    // its sender gets a receipt for it.
    let received = match a.mode {
        Mode::All | Mode::Group => rate,
        Mode::Direct | Mode::File => sends + rate.div_ceil(a.members.max(1) as u64),
    };
    let acks = received.div_ceil(ACK_EVERY).max(1);
    u32::try_from(sends + acks).unwrap_or(u32::MAX)
}

/// Open files this process and a started server need for `members`: a socket each, and some
/// spare for the executable's own files.
pub fn files_needed(members: usize) -> u64 {
    members as u64 + 64
}

/// Checks that `needed` open files fit under the `soft` limit (`None`: unknown, not checked).
pub fn check_open_files(needed: u64, soft: Option<u64>) -> Result<(), String> {
    match soft {
        Some(soft) if soft < needed => Err(format!(
            "--members: {needed} open files are needed and this shell allows {soft}; \
             raise the limit first (`ulimit -n {needed}`) or lower --members"
        )),
        _ => Ok(()),
    }
}

/// The soft limit on open files, from a `/proc/PID/limits` text.
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// Fails early, with what to do, when this process (and so a server it starts, which inherits
/// the limit) may not open a socket for every member: Linux's usual soft limit, 1024, would
/// otherwise end a run of 1000 members halfway through the joins.
pub fn ensure_open_files(members: usize) -> Result<(), BenchError> {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| soft_open_files(&l));
    check_open_files(files_needed(members), soft).map_err(BenchError::Option)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argh::FromArgs;

    fn plan(list: &[&str]) -> Plan {
        let args = super::super::BenchArgs::from_args(&["bench"], list).expect("valid options");
        Plan::new(&args).expect("a valid plan")
    }

    #[test]
    fn the_default_rate_limit_unless_a_member_sends_faster() {
        // 10 senders at 100 msg/s: 10 each, and an ack a second for what they receive.
        let p = plan(&["--members", "20", "--senders", "10", "--rate", "100"]);
        assert_eq!(RateLimit::for_plan(&p), RateLimit::Default(20));
        assert_eq!(RateLimit::for_plan(&p).flag(), None);
        // 1000 @all msg/s: every member acknowledges 1000/64 frames a second, senders send 100.
        let p = plan(&["--members", "100", "--senders", "10", "--rate", "1000"]);
        let r = RateLimit::for_plan(&p);
        assert_eq!(
            r,
            RateLimit::Raised {
                limit: 232,
                need: 116,
                default: 20
            }
        );
        assert!(r.to_string().contains("raised to 232"), "{r}");
        // Direct: 20 senders at 1000 msg/s send 50 each and get 50 receipts (one ack).
        let p = plan(&[
            "--members",
            "200",
            "--senders",
            "20",
            "--rate",
            "1000",
            "--mode",
            "direct",
        ]);
        assert_eq!(RateLimit::for_plan(&p).flag(), Some(2 * (50 + 1)));
        // Joins only: nothing is sent.
        let p = plan(&["--members", "5000", "--seconds", "0"]);
        assert_eq!(RateLimit::for_plan(&p), RateLimit::Default(20));
    }

    #[test]
    fn a_run_needs_a_file_for_every_member() {
        assert_eq!(files_needed(5000), 5064);
        assert_eq!(check_open_files(5064, Some(20_000)), Ok(()));
        assert_eq!(check_open_files(5064, None), Ok(()));
        let err = check_open_files(5064, Some(1024)).unwrap_err();
        assert!(err.contains("5064") && err.contains("1024"), "{err}");
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(soft_open_files(limits), Some(1024));
        assert_eq!(
            soft_open_files("Max open files            unlimited            unlimited  files"),
            Some(u64::MAX)
        );
        assert_eq!(soft_open_files("nothing here"), None);
    }
}
