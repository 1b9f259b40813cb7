//! The server's own admin endpoint: it joins the hub like any member (with the admin's key), opens
//! and verifies what is addressed to the admin and every `@all`, and runs the prompt's commands.
//! All operator output goes through one [`Output`], which also feeds the transcript.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::admin::{self, Command};
use crate::config::{AdminKey, Config};
use crate::crypto::Identity;
use crate::hub::{self, Outbox};
use crate::protocol::{Presence, ServerMsg, Via};
use crate::server::Ctx;
use crate::session::{Destination, Event, Opened, Output as SessionOutput, Session};
use crate::ws;

/// The hub's id for the server's own endpoint.
pub const CONSOLE_CONN: hub::ConnId = 0;
/// Bytes of frames waiting for the prompt at most; past it the prompt is told what it missed.
pub const CONSOLE_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Private-key operations (opening a direct message or a sender key) the admin's prompt spends
/// on one sender per minute; past it, that sender's messages are not opened.
pub const KEY_OPS_PER_MINUTE: u32 = 120;
/// Senders whose budget is tracked at most (the oldest windows are forgotten first).
const MAX_BUDGETS: usize = 4096;

mod output;
pub use output::{Line, Lines, Output, OUTPUT_BYTES};

fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `HH:MM:SS` (UTC) of a millisecond timestamp.
///
/// ```
/// assert_eq!(dyspatcher::console::clock(1_763_766_000_000), "23:00:00");
/// ```
pub fn clock(ms: i64) -> String {
    let (_, _, _, h, mi, s) = civil(ms);
    format!("{h:02}:{mi:02}:{s:02}")
}

/// ISO 8601 UTC time of a millisecond timestamp.
///
/// ```
/// assert_eq!(dyspatcher::console::iso_time(1_763_766_000_000), "2025-11-21T23:00:00Z");
/// ```
pub fn iso_time(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// How a message is shown: `alice (1f0c2a3b4c5d) → ADMIN: text`.
pub fn describe(session: &Session, m: &Opened) -> String {
    let via = match m.via {
        Some(Via::Prompt) => " (via prompt)",
        Some(Via::Web) => " (via web)",
        None => "",
    };
    let to = match &m.to {
        Destination::All => "@all".to_string(),
        Destination::Group(g) => format!("#{}", group_label(session, g)),
        Destination::Direct(k) => session
            .name_of(k)
            .unwrap_or(&k[..12.min(k.len())])
            .to_string(),
    };
    format!(
        "{} ({}){via} → {to}: {}",
        m.from_name,
        &m.from_key_id[..12],
        m.text
    )
}

/// How a group event is shown.
pub fn describe_group(session: &Session, e: &crate::session::GroupEvent) -> String {
    use crate::session::GroupEvent as G;
    match e {
        G::Roster {
            group,
            epoch,
            new: true,
            owner,
            ..
        } => format!(
            "you are in group #{} (id {}, epoch {epoch}), created by {owner}",
            group_label(session, group),
            &group[..12]
        ),
        G::Roster {
            group,
            epoch,
            owner,
            added,
            removed,
            ..
        } => {
            let mut what = Vec::new();
            for n in added {
                what.push(format!("{n} was added by {owner}"));
            }
            for n in removed {
                what.push(format!("{n} was removed"));
            }
            if what.is_empty() {
                what.push(format!("{owner} is now the owner"));
            }
            format!(
                "group #{} (epoch {epoch}): {}",
                group_label(session, group),
                what.join(", ")
            )
        }
        G::Gone { group, why } => format!("group {}: {why}", &group[..12.min(group.len())]),
        G::Refused { reason, .. } => format!("warning: {reason}"),
        G::MemberLeft {
            group,
            name,
            reason,
        } => {
            let how = match reason {
                crate::protocol::GroupLeftReason::Left => "left the group",
                crate::protocol::GroupLeftReason::RemovedFromChat => "left the chat",
            };
            format!("group #{}: {name} {how}", group_label(session, group))
        }
        G::Info { group, info } => format!(
            "group {} is called #{}{}",
            &group[..12],
            info.name,
            if info.topic.is_empty() {
                String::new()
            } else {
                format!(" ({})", info.topic)
            }
        ),
    }
}

/// The `/groups` listing of an endpoint: the groups it is in, with their verified members.
pub fn list_groups(session: &Session) -> String {
    let mut groups: Vec<(&String, &crate::session::GroupState)> = session.groups().iter().collect();
    if groups.is_empty() {
        return "you are in no group".into();
    }
    groups.sort_by_key(|(id, _)| group_label(session, id));
    let mut out = format!("{} group(s):", groups.len());
    for (id, g) in groups {
        let names: Vec<String> = g
            .verified_members()
            .map(|k| {
                let n = session.name_of(k).unwrap_or(&k[..12]).to_string();
                if *k == g.roster.owner {
                    format!("{n} (owner)")
                } else {
                    n
                }
            })
            .collect();
        out += &format!(
            "\n  #{}  id {}  epoch {}: {}",
            group_label(session, id),
            &id[..12],
            g.roster.epoch,
            names.join(", ")
        );
    }
    out
}

/// How a group is named on screen: its name (from its owner), else the start of its id.
pub fn group_label(session: &Session, group: &str) -> String {
    session
        .groups()
        .get(group)
        .and_then(|g| g.info.as_ref())
        .map_or_else(
            || group[..12.min(group.len())].to_string(),
            |i| i.name.clone(),
        )
}

mod endpoint;
pub mod groups;

pub use endpoint::run;
