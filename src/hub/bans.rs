//! Kicks and bans: keys refused for a while (`/kick NAME [MINUTES]`) or until lifted (`/ban`).
//! In memory only; an allow list is the lasting way to keep a key out.

use std::collections::HashMap;

pub use crate::protocol::DEFAULT_KICK_MINUTES;

/// One refused key.
#[derive(Debug, Clone)]
pub struct Ban {
    /// The name it had.
    pub name: String,
    /// When it may return (ms since the epoch); `None`: until lifted.
    pub until: Option<i64>,
}

/// The refused keys, by key ID.
#[derive(Default)]
pub struct Bans(HashMap<String, Ban>);

impl Bans {
    /// Refuses `key_id` until `until`.
    pub fn add(&mut self, key_id: &str, name: &str, until: Option<i64>) {
        self.0.insert(
            key_id.to_string(),
            Ban {
                name: name.to_string(),
                until,
            },
        );
    }

    /// The ban on `key_id` in force at `now`, if any (an expired one is forgotten).
    pub fn active(&mut self, key_id: &str, now: i64) -> Option<Ban> {
        let ban = self.0.get(key_id)?;
        if ban.until.is_some_and(|u| u <= now) {
            self.0.remove(key_id);
            return None;
        }
        Some(ban.clone())
    }

    /// Lifts the ban of the member once called `name`; false if there is none.
    pub fn lift(&mut self, name: &str, now: i64) -> bool {
        self.expire(now);
        let before = self.0.len();
        self.0.retain(|_, b| b.name != name);
        self.0.len() < before
    }

    /// The bans in force, sorted by name: (name, key ID, until).
    pub fn list(&mut self, now: i64) -> Vec<(String, String, Option<i64>)> {
        self.expire(now);
        let mut list: Vec<_> = self
            .0
            .iter()
            .map(|(k, b)| (b.name.clone(), k.clone(), b.until))
            .collect();
        list.sort();
        list
    }

    fn expire(&mut self, now: i64) {
        self.0.retain(|_, b| b.until.is_none_or(|u| u > now));
    }
}

/// "in 9 minutes", "in 40 seconds", or "until the admin lifts it".
pub fn describe_until(until: Option<i64>, now: i64) -> String {
    match until {
        None => "until the admin lifts the ban".into(),
        Some(u) => {
            let secs = ((u - now).max(0) + 999) / 1000;
            if secs >= 90 {
                format!("in {} minutes", (secs + 59) / 60)
            } else {
                format!("in {secs} seconds")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_expire_lift_and_list() {
        let mut bans = Bans::default();
        bans.add("k1", "alice", Some(1_000));
        bans.add("k2", "bob", None);
        assert!(bans.active("k1", 999).is_some());
        assert!(bans.active("k1", 1_000).is_none());
        assert_eq!(bans.list(0), vec![("bob".into(), "k2".into(), None)]);
        assert!(!bans.lift("carol", 0));
        assert!(bans.lift("bob", 0));
        assert!(bans.active("k2", 0).is_none());
        assert_eq!(describe_until(Some(600_000), 0), "in 10 minutes");
        assert_eq!(describe_until(Some(40_000), 0), "in 40 seconds");
    }
}
