//! Groups ending and shrinking on the server: a member leaving a group or the chat (the others
//! are told, or the group is deleted when its owner went), and the admin's listing and deletion.

use super::mailbox::SeatId;
use super::{payload_of, Hub, Payload};
use crate::protocol::{DeletedBy, GroupLeftReason, ServerMsg};

impl Hub {
    pub(super) fn tell_group_left(&mut self, group: &str, key_id: &str, reason: GroupLeftReason) {
        let payload = payload_of(&ServerMsg::GroupLeft {
            group: group.to_string(),
            key_id: key_id.to_string(),
            reason,
        });
        let targets = self.group_seats(group, SeatId::MAX);
        for t in targets {
            self.deliver(t, &payload, "group_left", None);
        }
    }

    /// Deletes a group and tells who was routed in it (the seat `except` excepted).
    pub(super) fn delete_group(&mut self, group: &str, by: DeletedBy, except: Option<SeatId>) {
        let payload: Payload = payload_of(&ServerMsg::GroupDeleted {
            group: group.to_string(),
            by,
        });
        for k in self.groups.remove(group) {
            for t in self.dir.seats_of(&k, except.unwrap_or(SeatId::MAX)) {
                self.deliver(t, &payload, "group_deleted", None);
            }
        }
    }

    /// A member left the chat: its groups are told, or deleted when it owned them.
    pub(super) fn groups_member_gone(&mut self, key_id: &str) {
        for group in self.groups.of(key_id) {
            let owner = self.groups.by_id[&group].roster.owner == key_id;
            if owner {
                self.delete_group(&group, DeletedBy::Owner, None);
            } else {
                self.groups.unroute(&group, key_id);
                self.tell_group_left(&group, key_id, GroupLeftReason::RemovedFromChat);
            }
        }
    }

    /// The admin's `/groups`: ids, sizes and member names (routing metadata only).
    pub(super) fn list_groups(&self) -> String {
        if self.groups.by_id.is_empty() {
            return "no groups".into();
        }
        let mut ids: Vec<&String> = self.groups.by_id.keys().collect();
        ids.sort();
        let mut out = format!("{} groups:", ids.len());
        for id in ids {
            let g = &self.groups.by_id[id];
            let mut names: Vec<String> = g.routed.iter().map(|k| self.name_of(k)).collect();
            names.sort();
            out += &format!(
                "\n  {}  epoch {}  {} members (owner {}): {}",
                &id[..12],
                g.roster.epoch,
                g.routed.len(),
                self.name_of(&g.roster.owner),
                names.join(", ")
            );
        }
        out
    }

    /// The admin's `/group delete ID` (the first characters of the id are enough).
    pub(super) fn admin_delete_group(&mut self, prefix: &str) -> Result<String, String> {
        let matches: Vec<String> = self
            .groups
            .by_id
            .keys()
            .filter(|id| !prefix.is_empty() && id.starts_with(prefix))
            .cloned()
            .collect();
        match &matches[..] {
            [id] => {
                let n = self.groups.by_id[id].routed.len();
                self.delete_group(id, DeletedBy::Admin, None);
                Ok(format!("group {} deleted ({n} members told)", &id[..12]))
            }
            [] => Err(format!("no group whose id starts with {prefix}")),
            _ => Err(format!(
                "{} groups start with {prefix}: give more of the id",
                matches.len()
            )),
        }
    }
}
