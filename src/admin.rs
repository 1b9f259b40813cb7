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
    /// `/kick NAME`.
    Kick(String),
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
  /users, /u            list connected members with their key IDs
  /kick NAME            disconnect NAME
  /key public|private   print the admin's public or private key (/k pub, /k pri)
  /allowlist, /a        list the allow list and who of it is connected
  /reload               re-read the allow list now
  /tunnel               show the SSH tunnel's state
  /help, /h             this help
  /quit, /q             close every connection and stop the server";

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
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or_default();
    let arg = words.next();
    let extra = words.next().is_some();
    let command = match (cmd, arg) {
        ("/users" | "/u", None) => Command::Users,
        ("/kick", Some(name)) => Command::Kick(name.to_string()),
        ("/kick", None) => return Err("usage: /kick NAME".into()),
        ("/key" | "/k", Some("public" | "pub")) => Command::KeyPublic,
        ("/key" | "/k", Some("private" | "pri")) => Command::KeyPrivate,
        ("/key" | "/k", _) => return Err("usage: /key public, or /key private".into()),
        ("/allowlist" | "/a", None) => Command::AllowList,
        ("/reload", None) => Command::Reload,
        ("/tunnel", None) => Command::Tunnel,
        ("/help" | "/h", None) => Command::Help,
        ("/quit" | "/q", None) => Command::Quit,
        (
            "/users" | "/u" | "/allowlist" | "/a" | "/reload" | "/help" | "/h" | "/quit" | "/q",
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

/// The `/users` listing.
pub fn users(session: &Session) -> String {
    let members = session.members();
    let mut out = format!("{} member(s) online:", members.len());
    for m in members {
        let mark = if m.admin { "  (admin)" } else { "" };
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
        assert_eq!(parse("/kick bob"), Ok(Command::Kick("bob".into())));
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
        assert_eq!(parse("/kick").unwrap_err(), "usage: /kick NAME");
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
