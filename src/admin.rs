//! The admin prompt's commands: parsing a typed line, the help text, and the listings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::allowlist::AllowList;
use crate::hub;
use crate::server::Ctx;
use crate::session::Session;

/// What the admin typed.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Nothing.
    Empty,
    /// `/users`, `/u`.
    Users,
    /// `/kick NAME [MINUTES]`, `/ban NAME`, `/unban NAME`, `/bans`.
    Moderate(hub::Moderation),
    /// `/key public`, `/k pub`.
    KeyPublic,
    /// `/key private`, `/k pri`.
    KeyPrivate,
    /// `/allowlist`, `/a`.
    AllowList,
    /// `/reload`.
    Reload,
    /// `/tunnel`.
    Tunnel,
    /// `/help`, `/h`.
    Help,
    /// `/quit`, `/q`.
    Quit,
    /// `/panic`, exactly (no short form, no argument).
    Panic,
    /// `/send NAME FILE` or `/send #GROUP FILE` (to = Some) or `/send all FILE` (to = None).
    SendFile {
        /// Recipient name, or None for everyone.
        to: Option<String>,
        /// The file's path (the rest of the line).
        path: String,
    },
    /// `/cancel`: every file being sent or received.
    CancelFiles,
    /// `@NAME text` (to = Some) or `@all text` (to = None).
    Send {
        /// Recipient name, or None for everyone.
        to: Option<String>,
        /// The text.
        text: String,
    },
}

/// The help text.
pub const HELP: &str = "\
Commands:
  @NAME text            send a direct message to NAME
  @all text             send a message to everyone
  /send NAME|all FILE   send a file (end to end encrypted, in chunks); /send #GROUP FILE
                        to one of the admin's own groups
  /cancel               stop every file being sent or received
  /users, /u            list connected members with their key IDs
  /kick NAME [MINUTES]  remove NAME and refuse their key for MINUTES (default 10)
  /ban NAME             remove NAME and refuse their key until /unban
  /unban NAME           let a kicked or banned NAME join again
  /bans                 list who is kicked or banned, and until when
  /groups               list the private groups: ids, sizes, member names (never their
                        names, topics or content: the server cannot read those)
  /group delete ID      delete a group on the server (its members are told); the first
                        characters of the id are enough
  #GROUP text, /group create|add|remove|owner|leave …   the admin's own groups, as in
                        dyspatcher connect
  /key public|private   print the admin's public or private key (/k pub, /k pri)
  /allowlist, /a        list the allow list and who of it is connected
  /reload               re-read the allow list now
  /tunnel               show the SSH tunnel's state
  /help, /h             this help
  /quit, /q             close every connection and stop the server
  /panic                close everything at once, erase the transcript and TLS state, exit
                        (only with --panic)";

/// Parses one prompt line.
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Command::Empty);
    }
    if let Some(rest) = line.strip_prefix('@') {
        let (to, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let text = text.trim();
        if to.is_empty() || text.is_empty() {
            return Err("usage: @NAME text, or @all text".into());
        }
        let to = (to != "all").then(|| to.to_string());
        return Ok(Command::Send {
            to,
            text: text.to_string(),
        });
    }
    if let Some(rest) = line.strip_prefix("/send") {
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            return parse_send_file(rest.trim());
        }
    }
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or_default();
    if cmd == "/group" {
        return match words.collect::<Vec<_>>()[..] {
            ["delete", id] => Ok(Command::Moderate(hub::Moderation::GroupDelete(
                id.to_ascii_lowercase(),
            ))),
            _ => Err("usage: /group delete ID (the first characters of the id)".into()),
        };
    }
    if cmd == "/kick" {
        return parse_kick(words.collect());
    }
    let arg = words.next();
    let extra = words.next().is_some();
    let command = match (cmd, arg) {
        ("/users" | "/u", None) => Command::Users,
        ("/ban", Some(name)) => Command::Moderate(hub::Moderation::Ban(name.to_string())),
        ("/unban", Some(name)) => Command::Moderate(hub::Moderation::Unban(name.to_string())),
        ("/ban", None) => return Err("usage: /ban NAME".into()),
        ("/unban", None) => return Err("usage: /unban NAME".into()),
        ("/bans", None) => Command::Moderate(hub::Moderation::List),
        ("/groups", None) => Command::Moderate(hub::Moderation::Groups),
        ("/key" | "/k", Some("public" | "pub")) => Command::KeyPublic,
        ("/key" | "/k", Some("private" | "pri")) => Command::KeyPrivate,
        ("/key" | "/k", _) => return Err("usage: /key public, or /key private".into()),
        ("/allowlist" | "/a", None) => Command::AllowList,
        ("/reload", None) => Command::Reload,
        ("/tunnel", None) => Command::Tunnel,
        ("/help" | "/h", None) => Command::Help,
        ("/quit" | "/q", None) => Command::Quit,
        ("/panic", None) => Command::Panic,
        ("/cancel", None) => Command::CancelFiles,
        (
            "/users" | "/u" | "/allowlist" | "/a" | "/reload" | "/help" | "/h" | "/quit" | "/q"
            | "/bans" | "/panic" | "/cancel" | "/groups",
            Some(_),
        ) => return Err(format!("{cmd}: too many words; /help lists the commands")),
        _ if cmd.starts_with('/') => {
            return Err(format!("unknown command {cmd}; /help lists the commands"))
        }
        _ => return Err("to send, start with @NAME or @all; /help lists the commands".into()),
    };
    if extra {
        return Err(format!("{cmd}: too many words; /help lists the commands"));
    }
    Ok(command)
}

pub use crate::protocol::MAX_KICK_MINUTES;

fn parse_send_file(rest: &str) -> Result<Command, String> {
    let (to, path) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let path = path.trim();
    if to.is_empty() || path.is_empty() {
        return Err("usage: /send NAME FILE, /send #GROUP FILE, or /send all FILE".into());
    }
    Ok(Command::SendFile {
        to: (to != "all").then(|| to.to_string()),
        path: path.to_string(),
    })
}

fn parse_kick(args: Vec<&str>) -> Result<Command, String> {
    let usage = || format!("usage: /kick NAME [MINUTES], MINUTES from 1 to {MAX_KICK_MINUTES}");
    let (name, minutes) = match args.as_slice() {
        [name] => (name, hub::DEFAULT_KICK_MINUTES),
        [name, m] => match m.parse::<u64>() {
            Ok(m) if (1..=MAX_KICK_MINUTES).contains(&m) => (name, m),
            _ => return Err(usage()),
        },
        _ => return Err(usage()),
    };
    Ok(Command::Moderate(hub::Moderation::Kick {
        name: name.to_string(),
        minutes,
    }))
}

/// The `/users` listing.
pub fn users(session: &Session) -> String {
    let members = session.members();
    let away = members
        .iter()
        .filter(|m| session.is_away(&m.key_id))
        .count();
    let mut out = format!(
        "{} member(s), {} online, {away} away:",
        members.len(),
        members.len() - away
    );
    for m in members {
        let mark = match (m.admin, session.is_away(&m.key_id)) {
            (true, _) => "  (admin)",
            (false, true) => "  (away)",
            (false, false) => "",
        };
        out += &format!("\n  {:<15} {}{mark}", m.name, &m.key_id[..12]);
    }
    out
}

/// The `/tunnel` answer.
pub fn tunnel(ctx: &Ctx) -> String {
    match ctx.tunnel.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(t) => t.state().to_string(),
        None => "no SSH tunnel (start with --sshpfw-ip-address, --sshpfw-port, --sshpfw-user and --sshpfw-keyfile)".into(),
    }
}

/// The `/allowlist` listing.
pub fn allow_list(ctx: &Ctx, session: &Session) -> String {
    let guard = ctx.allow.lock().unwrap_or_else(|e| e.into_inner());
    let Some((path, list)) = guard.as_ref() else {
        return "no allow list: anyone may join (start with --allow-list FILE.csv)".into();
    };
    let mut out = format!(
        "allow list {} ({} entries):",
        path.display(),
        list.entries().len()
    );
    for (key_id, name) in list.entries() {
        let online = if session.name_of(key_id).is_some() {
            "  connected"
        } else {
            ""
        };
        out += &format!("\n  {name:<15} {key_id}{online}");
    }
    out
}

fn apply(
    ctx: &Ctx,
    path: &std::path::Path,
    loaded: Result<crate::allowlist::Loaded, crate::allowlist::AllowListError>,
) -> Option<Arc<AllowList>> {
    match loaded {
        Ok(loaded) => {
            for p in &loaded.problems {
                ctx.out
                    .notice(format!("allow list {}: {p}", path.display()));
            }
            let list = Arc::new(loaded.list);
            ctx.out.notice(format!(
                "allow list reloaded: {} entries",
                list.entries().len()
            ));
            *ctx.allow.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((path.to_path_buf(), list.clone()));
            Some(list)
        }
        Err(e) => {
            ctx.out
                .notice(format!("{e}; keeping the previous allow list"));
            None
        }
    }
}

/// Re-reads the allow list now (`/reload`, SIGHUP).
pub async fn reload_allow_list(ctx: &Ctx) {
    let path = ctx
        .allow
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|(p, _)| p.clone());
    let Some(path) = path else {
        ctx.out
            .reply("no allow list to reload (start with --allow-list FILE.csv)".into());
        return;
    };
    if let Some(list) = apply(ctx, &path, AllowList::load(&path)) {
        let _ = ctx.hub.send(hub::Event::AllowList(Some(list))).await;
    }
}

/// Watches the allow list file and applies its changes (every 2 seconds).
pub async fn watch_allow_list(path: PathBuf, ctx: Arc<Ctx>) {
    let (tx, rx) = async_channel::unbounded();
    let watch_path = path.clone();
    let watcher = crate::allowlist::watch(watch_path, Duration::from_secs(2), move |loaded| {
        let _ = tx.try_send(loaded);
    });
    let apply_loop = async {
        while let Ok(loaded) = rx.recv().await {
            if let Some(list) = apply(&ctx, &path, loaded) {
                let _ = ctx.hub.send(hub::Event::AllowList(Some(list))).await;
            }
        }
    };
    futures_lite::future::or(watcher, apply_loop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_short_forms() {
        assert_eq!(parse("/u"), Ok(Command::Users));
        assert_eq!(parse(" /users "), Ok(Command::Users));
        let kick = |name: &str, minutes| {
            Ok(Command::Moderate(hub::Moderation::Kick {
                name: name.into(),
                minutes,
            }))
        };
        assert_eq!(parse("/kick bob"), kick("bob", 10));
        assert_eq!(parse("/kick bob 30"), kick("bob", 30));
        assert!(parse("/kick bob 0").is_err());
        assert!(parse("/kick bob soon").is_err());
        assert!(parse("/kick bob 3 4").is_err());
        assert!(parse("/kick bob 100000").is_err());
        assert_eq!(
            parse("/ban bob"),
            Ok(Command::Moderate(hub::Moderation::Ban("bob".into())))
        );
        assert_eq!(
            parse("/unban bob"),
            Ok(Command::Moderate(hub::Moderation::Unban("bob".into())))
        );
        assert_eq!(parse("/bans"), Ok(Command::Moderate(hub::Moderation::List)));
        assert!(parse("/bans x").is_err());
        assert_eq!(parse("/ban").unwrap_err(), "usage: /ban NAME");
        assert_eq!(parse("/k pub"), Ok(Command::KeyPublic));
        assert_eq!(parse("/key private"), Ok(Command::KeyPrivate));
        assert_eq!(parse("/q"), Ok(Command::Quit));
        assert_eq!(parse("/h"), Ok(Command::Help));
        assert_eq!(parse("/a"), Ok(Command::AllowList));
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(
            parse("@bob hello  there"),
            Ok(Command::Send {
                to: Some("bob".into()),
                text: "hello  there".into()
            })
        );
        assert_eq!(
            parse("@all hi"),
            Ok(Command::Send {
                to: None,
                text: "hi".into()
            })
        );
    }

    #[test]
    fn explains_mistakes() {
        assert!(parse("/kick")
            .unwrap_err()
            .starts_with("usage: /kick NAME [MINUTES]"));
        assert!(parse("/key").unwrap_err().contains("usage"));
        assert!(parse("/dance")
            .unwrap_err()
            .contains("unknown command /dance"));
        assert!(parse("hello").unwrap_err().contains("start with @NAME"));
        assert!(parse("@bob").unwrap_err().contains("usage"));
        assert!(parse("/users extra")
            .unwrap_err()
            .contains("too many words"));
    }
}
