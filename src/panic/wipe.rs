//! Erasing files for the panic stop: each is overwritten in place with random bytes, to its
//! full length, synced to the device, and only then deleted (and the deletion synced too).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes overwritten per write.
const CHUNK: usize = 64 * 1024;

/// What the self-signed certificate files dyspatcher keeps are called: `self-signed-*.crt`,
/// `.key`, and the `.tmp` of a key being saved.
fn is_self_signed(name: &str) -> bool {
    name.starts_with("self-signed-")
        && [".crt", ".key", ".tmp"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Overwrites all of `file` with random bytes (zeros if the system's random source fails),
/// syncs it, then deletes `path` if it still names that file, and syncs its folder. Returns the
/// bytes overwritten.
pub fn overwrite_and_remove(file: &mut File, path: &Path) -> Result<u64, String> {
    let fail = |what: &str, e: std::io::Error| format!("`{}`: {what}: {e}", path.display());
    let meta = file
        .metadata()
        .map_err(|e| fail("cannot read its size", e))?;
    let len = meta.len();
    file.seek(SeekFrom::Start(0))
        .map_err(|e| fail("cannot overwrite it", e))?;
    let mut noise = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
        if getrandom::fill(&mut noise[..n]).is_err() {
            noise[..n].fill(0);
        }
        file.write_all(&noise[..n])
            .map_err(|e| fail("cannot overwrite it", e))?;
        left -= n as u64;
    }
    file.sync_all()
        .map_err(|e| fail("overwritten, but the overwrite cannot be synced", e))?;
    // Delete the name only if it still is this file: never a file put in its place since.
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
            std::fs::remove_file(path).map_err(|e| fail("overwritten, but not deleted", e))?
        }
        Ok(_) => {
            return Err(format!(
                "`{}`: overwritten, but its name now belongs to another file: not deleted",
                path.display()
            ))
        }
        Err(e) => return Err(fail("overwritten, but its name is gone", e)),
    }
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Ok(dir) = File::open(folder.unwrap_or(Path::new("."))) {
        let _ = dir.sync_all();
    }
    Ok(len)
}

/// Overwrites and deletes the file at `path` (a symbolic link is deleted, not followed).
pub fn erase_file(path: &Path) -> Result<u64, String> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("`{}`: cannot erase it: {e}", path.display()))?;
    if !meta.is_file() {
        std::fs::remove_file(path).map_err(|e| {
            format!(
                "`{}`: not a file, and cannot delete it: {e}",
                path.display()
            )
        })?;
        return Ok(0);
    }
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("`{}`: cannot open it to overwrite it: {e}", path.display()))?;
    overwrite_and_remove(&mut file, path)
}

/// Erases every self-signed certificate and key dyspatcher kept in `dir` (and the folder, once
/// empty). Other files are left alone. A missing folder has nothing to erase.
pub fn erase_self_signed(dir: &Path) -> Vec<(PathBuf, Result<u64, String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_self_signed))
        .map(|e| e.path())
        .collect();
    paths.sort();
    let done = paths
        .into_iter()
        .map(|p| {
            let r = erase_file(&p);
            (p, r)
        })
        .collect();
    let _ = std::fs::remove_dir(dir);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dysp-wipe-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_is_overwritten_to_its_length_then_deleted() {
        let dir = temp("file");
        let (path, link) = (dir.join("key.pem"), dir.join("seen"));
        let secret = "-----BEGIN PRIVATE KEY-----\n".repeat(5000);
        std::fs::write(&path, &secret).unwrap();
        std::fs::hard_link(&path, &link).unwrap();
        assert_eq!(erase_file(&path), Ok(secret.len() as u64));
        assert!(!path.exists());
        let left = std::fs::read(&link).unwrap();
        assert_eq!(left.len(), secret.len());
        assert!(!String::from_utf8_lossy(&left).contains("PRIVATE"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_files_and_replaced_names_are_reported() {
        let dir = temp("missing");
        let err = erase_file(&dir.join("nothing")).unwrap_err();
        assert!(
            err.contains("nothing") && err.contains("cannot erase it"),
            "{err}"
        );
        // The name now belongs to another file: overwrite what was opened, delete nothing else.
        let (path, moved) = (dir.join("t.log"), dir.join("moved"));
        std::fs::write(&path, "secret").unwrap();
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        std::fs::rename(&path, &moved).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        let err = overwrite_and_remove(&mut file, &path).unwrap_err();
        assert!(err.contains("another file"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
        assert!(!std::fs::read_to_string(&moved)
            .unwrap_or_default()
            .contains("secret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_is_deleted_and_its_target_left_alone() {
        let dir = temp("link");
        let (target, link) = (dir.join("elsewhere"), dir.join("self-signed-ab.key"));
        std::fs::write(&target, "not ours").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let done = erase_self_signed(&dir);
        assert_eq!(done, vec![(link.clone(), Ok(0))]);
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "not ours");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_self_signed_files_are_erased_from_the_folder() {
        let dir = temp("tls");
        for name in [
            "self-signed-ab.crt",
            "self-signed-ab.key",
            "self-signed-cd.tmp",
        ] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        std::fs::write(dir.join("mine.pem"), "keep").unwrap();
        let done = erase_self_signed(&dir);
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|(_, r)| r == &Ok(1)));
        assert!(dir.join("mine.pem").exists());
        std::fs::remove_file(dir.join("mine.pem")).unwrap();
        assert!(erase_self_signed(&dir).is_empty());
        assert!(!dir.exists(), "an empty folder goes too");
        assert!(erase_self_signed(&dir).is_empty());
    }
}
