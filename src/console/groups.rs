//! Group commands of the prompt and of `dyspatcher connect`: `#GROUP text` and `/group create
//! NAME member…`, `add`, `remove`, `owner`, `leave`, turned into the messages a session seals.

use crate::protocol::ClientMsg;
use crate::session::Session;

/// A group command as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommand {
    /// `#GROUP text`.
    Say {
        /// The group's name or the first characters of its id.
        group: String,
        /// The text.
        text: String,
    },
    /// `/group create NAME member…`.
    Create {
        /// The group's name (sealed: the server never sees it).
        name: String,
        /// Members' names.
        members: Vec<String>,
    },
    /// `/group add GROUP NAME`.
    Add(String, String),
    /// `/group remove GROUP NAME`.
    Remove(String, String),
    /// `/group owner GROUP NAME`.
    Owner(String, String),
    /// `/group leave GROUP`.
    Leave(String),
}

/// What `/help` says of groups.
pub const GROUP_HELP: &str = "\
  #GROUP text           write to a group (its name, or the first characters of its id)
  /group create NAME member…   create a group of you and those members
  /group add GROUP NAME, /group remove GROUP NAME   change its members (owner only)
  /group owner GROUP NAME      hand the group over (owner only)
  /group leave GROUP           leave a group";

/// Parses `#GROUP text` and `/group …` (but `/group delete`, the admin's); None for anything
/// else.
pub fn parse(line: &str) -> Option<Result<GroupCommand, String>> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix('#') {
        let (group, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if group.is_empty() || text.trim().is_empty() {
            return Some(Err("usage: #GROUP text".into()));
        }
        return Some(Ok(GroupCommand::Say {
            group: group.to_string(),
            text: text.trim().to_string(),
        }));
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first() != Some(&"/group") || words.get(1) == Some(&"delete") {
        return None;
    }
    let two = |f: fn(String, String) -> GroupCommand| match words[2..] {
        [g, n] => Ok(f(g.to_string(), n.to_string())),
        _ => Err(format!("usage: /group {} GROUP NAME", words[1])),
    };
    Some(match words.get(1).copied() {
        Some("create") if words.len() >= 3 => Ok(GroupCommand::Create {
            name: words[2].to_string(),
            members: words[3..].iter().map(|s| s.to_string()).collect(),
        }),
        Some("create") => Err("usage: /group create NAME member…".into()),
        Some("add") => two(GroupCommand::Add),
        Some("remove") => two(GroupCommand::Remove),
        Some("owner") => two(GroupCommand::Owner),
        Some("leave") => match words[2..] {
            [g] => Ok(GroupCommand::Leave(g.to_string())),
            _ => Err("usage: /group leave GROUP".into()),
        },
        _ => Err("usage: /group create|add|remove|owner|leave …".into()),
    })
}

fn group_id(session: &Session, group: &str) -> Result<String, String> {
    session
        .group_named(group)
        .ok_or_else(|| format!("no group {group}; /groups lists yours"))
}

/// The public keys the command needs before it is sealed (fetch them first).
pub fn keys_needed(session: &Session, cmd: &GroupCommand) -> Vec<String> {
    match cmd {
        GroupCommand::Say { group, .. } => group_id(session, group)
            .map(|g| session.missing_for_group(&g))
            .unwrap_or_default(),
        GroupCommand::Add(_, name) => session
            .key_id_of(name)
            .filter(|k| !session.has_key(k))
            .map(|k| vec![k.to_string()])
            .unwrap_or_default(),
        GroupCommand::Create { members, .. } => members
            .iter()
            .filter_map(|n| session.key_id_of(n))
            .filter(|k| !session.has_key(k))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Seals the command: the messages to send and what to show.
pub fn run(session: &mut Session, cmd: &GroupCommand) -> Result<(Vec<ClientMsg>, String), String> {
    let e = |e: crate::session::SendError| e.to_string();
    Ok(match cmd {
        GroupCommand::Say { group, text } => {
            let id = group_id(session, group)?;
            let msgs = session.seal_group(&id, text).map_err(e)?;
            let label = super::group_label(session, &id);
            let me = session.name().unwrap_or_default().to_string();
            (msgs, format!("{me} → #{label}: {text}"))
        }
        GroupCommand::Create { name, members } => {
            let names: Vec<&str> = members.iter().map(String::as_str).collect();
            let msgs = session.create_group(name, &names).map_err(e)?;
            (
                msgs,
                format!("group #{name} created with {}", members.join(", ")),
            )
        }
        GroupCommand::Add(g, n) => {
            let id = group_id(session, g)?;
            (
                session.group_add(&id, n).map_err(e)?,
                format!("{n} added to #{g}"),
            )
        }
        GroupCommand::Remove(g, n) => {
            let id = group_id(session, g)?;
            let msgs = session.group_remove(&id, n).map_err(e)?;
            (msgs, format!("{n} removed from #{g}"))
        }
        GroupCommand::Owner(g, n) => {
            let id = group_id(session, g)?;
            let msg = session.group_owner(&id, n).map_err(e)?;
            (vec![msg], format!("#{g} handed over to {n}"))
        }
        GroupCommand::Leave(g) => {
            let id = group_id(session, g)?;
            (
                vec![session.group_leave(&id).map_err(e)?],
                format!("you left #{g}"),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_commands_parse_and_say_what_is_wrong() {
        assert_eq!(
            parse("#medics on my way"),
            Some(Ok(GroupCommand::Say {
                group: "medics".into(),
                text: "on my way".into()
            }))
        );
        assert_eq!(
            parse("/group create medics bobby carol"),
            Some(Ok(GroupCommand::Create {
                name: "medics".into(),
                members: vec!["bobby".into(), "carol".into()]
            }))
        );
        assert_eq!(
            parse("/group add medics dave"),
            Some(Ok(GroupCommand::Add("medics".into(), "dave".into())))
        );
        assert_eq!(
            parse("/group leave medics"),
            Some(Ok(GroupCommand::Leave("medics".into())))
        );
        assert!(parse("#medics").unwrap().is_err());
        assert!(parse("/group add medics").unwrap().is_err());
        assert!(parse("/group create").unwrap().is_err());
        assert!(parse("/group frobnicate x").unwrap().is_err());
        assert_eq!(parse("/group delete 0123"), None);
        assert_eq!(parse("@all hi"), None);
    }
}
