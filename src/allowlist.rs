//! The allow list: a CSV file of `keyid,name` rows naming who may join. Bad rows are reported with
//! their line numbers and skipped; the file is watched so changes apply without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::protocol;

/// Who may join, and under which name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<(String, String)>,
    by_key: HashMap<String, usize>,
}

/// A parsed allow list and the problems found on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The usable entries.
    pub list: AllowList,
    /// One line per skipped row: `line N: reason`.
    pub problems: Vec<String>,
}

/// Why the allow list file cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    /// The file does not exist.
    #[error("--allow-list: file `{0}` not found")]
    Missing(PathBuf),
    /// The file cannot be read.
    #[error("--allow-list: cannot read `{0}`: {1}")]
    Unreadable(PathBuf, std::io::Error),
}

impl AllowList {
    /// The listed name of `key_id`, if it is listed.
    pub fn name_of(&self, key_id: &str) -> Option<&str> {
        self.by_key.get(key_id).map(|&i| self.entries[i].1.as_str())
    }

    /// Every entry, in file order: `(key_id, name)`.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Parses CSV text: rows `keyid,name`; blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Loaded {
        let mut list = AllowList::default();
        let mut problems = Vec::new();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut names: HashMap<String, u64> = HashMap::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    problems.push(format!("line {line}: unreadable row ({e})"));
                    continue;
                }
            };
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            if record.iter().all(str::is_empty) {
                continue;
            }
            if record.len() != 2 {
                problems.push(format!(
                    "line {line}: expected `keyid,name`, found {} fields",
                    record.len()
                ));
                continue;
            }
            let key_id = record[0].to_ascii_lowercase();
            let name = record[1].to_string();
            if !protocol::is_hex(&key_id, 64) {
                problems.push(format!(
                    "line {line}: key ID must be 64 hex characters (SHA-256 of the public key)"
                ));
            } else if !protocol::valid_user_name(&name) && !protocol::valid_admin_name(&name) {
                problems.push(format!("line {line}: name `{name}` must be 4 to 15 characters a-z0-9 (or A-Z0-9 for the admin)"));
            } else if list.by_key.contains_key(&key_id) {
                problems.push(format!(
                    "line {line}: key ID listed twice; the first row counts"
                ));
            } else if let Some(first) = names.get(&name) {
                problems.push(format!(
                    "line {line}: name `{name}` already used on line {first}"
                ));
            } else {
                names.insert(name.clone(), line);
                list.by_key.insert(key_id.clone(), list.entries.len());
                list.entries.push((key_id, name));
            }
        }
        Loaded { list, problems }
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Loaded, AllowListError> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Self::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(AllowListError::Missing(path.to_path_buf()))
            }
            Err(e) => Err(AllowListError::Unreadable(path.to_path_buf(), e)),
        }
    }
}

/// What identifies a version of the file without reading it.
pub fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Polls `path` every `every`, calling `changed` whenever its modification time or size changes.
pub async fn watch(
    path: PathBuf,
    every: Duration,
    mut changed: impl FnMut(Result<Loaded, AllowListError>),
) {
    let mut last = stamp(&path);
    loop {
        smol::Timer::after(every).await;
        let now = stamp(&path);
        if now != last {
            last = now;
            changed(AllowList::load(&path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn parses_rows_comments_and_reports_bad_lines() {
        let text = format!(
            "# who may join\n{A},alice\n\n{},bobby\nnot-a-key,carol\n{B},Bad_Name\n{B}\n{A},again\n{B},alice\n{B},ADMIN\n",
            B.to_uppercase()
        );
        let loaded = AllowList::parse(&text);
        assert_eq!(loaded.list.name_of(A), Some("alice"));
        assert_eq!(loaded.list.name_of(B), Some("bobby"));
        assert_eq!(loaded.list.entries().len(), 2);
        let problems = loaded.problems.join("\n");
        assert!(
            problems.contains("line 5: key ID must be 64 hex"),
            "{problems}"
        );
        assert!(problems.contains("line 6: name `Bad_Name`"), "{problems}");
        assert!(
            problems.contains("line 7: expected `keyid,name`, found 1 fields"),
            "{problems}"
        );
        assert!(
            problems.contains("line 8: key ID listed twice"),
            "{problems}"
        );
        assert!(
            problems.contains("line 10: key ID listed twice"),
            "{problems}"
        );
        assert_eq!(loaded.problems.len(), 6, "{problems}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = AllowList::load(Path::new("/nonexistent/list.csv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--allow-list: file `/nonexistent/list.csv` not found"
        );
    }
}
