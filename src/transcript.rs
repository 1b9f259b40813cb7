//! The transcript: timestamped lines of what the admin sees, written and flushed one by one to a
//! file that did not exist before (a transcript is never overwritten).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An open transcript file.
pub struct Transcript {
    file: File,
}

impl Transcript {
    /// Creates the file, readable by its owner only (it holds opened messages); fails if it
    /// exists.
    pub fn create(path: &Path) -> Result<Self, String> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(|file| Self { file })
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "`{}` already exists; choose a new file (a transcript is never overwritten)",
                    path.display()
                ),
                _ => format!("cannot create `{}`: {e}", path.display()),
            })
    }

    /// Appends one line, stamped with `stamp`, and flushes it to the file.
    pub fn line(&mut self, stamp: &str, text: &str) -> std::io::Result<()> {
        // One write per line so that a crash never leaves half of one.
        let line = format!("{stamp} {}\n", text.replace('\n', "\n    "));
        self.file.write_all(line.as_bytes())?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("dysp-tr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.log");
        let _ = std::fs::remove_file(&path);
        let mut t = Transcript::create(&path).unwrap();
        t.line("2026-01-01T00:00:00Z", "one\ntwo").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "2026-01-01T00:00:00Z one\n    two\n"
        );
        let err = Transcript::create(&path).err().unwrap();
        assert!(err.contains("already exists"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
