//! The admin's commands about members from the web seat (`moderate`): checked, done as from
//! the prompt, answered with a notice and shown on the prompt too.

use super::directory::Kind;
use super::mailbox::SeatId;
use super::{notice, Hub, Moderation, Refusal};
use crate::protocol::{self, ErrorCode, ModerateAction, ModerateIn, NoticeCode};

impl Hub {
    /// A command from the admin's web seat: done as from the prompt, answered with a notice,
    /// and shown on the prompt too.
    pub(super) fn moderate_from_web(&mut self, seat: SeatId, m: ModerateIn) -> Result<(), Refusal> {
        if self.dir.seats.get(&seat).map(|s| s.kind) != Some(Kind::AdminWeb) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the admin may moderate",
            ));
        }
        let name = || {
            m.name.clone().ok_or(Refusal::new(
                ErrorCode::BadField,
                "moderate: name is required",
            ))
        };
        let action = match m.action {
            ModerateAction::Kick => {
                let minutes = m.minutes.unwrap_or(protocol::DEFAULT_KICK_MINUTES);
                if !(1..=protocol::MAX_KICK_MINUTES).contains(&minutes) {
                    return Err(Refusal::new(
                        ErrorCode::BadField,
                        format!(
                            "moderate: minutes must be 1 to {}",
                            protocol::MAX_KICK_MINUTES
                        ),
                    ));
                }
                Moderation::Kick {
                    name: name()?,
                    minutes,
                }
            }
            ModerateAction::Ban => Moderation::Ban(name()?),
            ModerateAction::Unban => Moderation::Unban(name()?),
            ModerateAction::Bans => Moderation::List,
        };
        let text = self
            .moderate(action)
            .map_err(|m| Refusal::new(ErrorCode::UnknownRecipient, m))?;
        if let Some(outbox) = self.dir.seats.get(&seat).and_then(|s| s.conn.as_ref()) {
            let _ = outbox
                .1
                .push(notice(NoticeCode::Moderated, text.clone(), None));
        }
        if let Some(console) = self
            .dir
            .admin_seat(Kind::Console)
            .and_then(|s| self.dir.seats.get(&s))
            .and_then(|s| s.conn.as_ref())
        {
            let _ = console.1.push(notice(
                NoticeCode::Moderated,
                format!("(via web) {text}"),
                None,
            ));
        }
        Ok(())
    }
}
