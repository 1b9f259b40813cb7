//! A folder of ready-made key pairs, so that the load generator and the tests do not pay for RSA
//! key generation on every run. Missing keys are made in parallel and saved as PKCS#8 PEM files.

use std::path::Path;

use crate::crypto::{CryptoError, Identity};

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyCacheError {
    /// The folder or a file cannot be written or read.
    #[error("key cache {0}: {1}")]
    Io(String, std::io::Error),
    /// A file holds no usable key.
    #[error("key cache {0}: {1}")]
    Key(String, CryptoError),
}

/// Loads `count` key pairs of `bits` bits from `dir`, making and saving those that are missing.
pub fn load_or_make(dir: &Path, count: usize, bits: usize) -> Result<Vec<Identity>, KeyCacheError> {
    std::fs::create_dir_all(dir).map_err(|e| KeyCacheError::Io(dir.display().to_string(), e))?;
    let path_of = |i: usize| dir.join(format!("rsa{bits}-{i:05}.pem"));
    let missing: Vec<usize> = (0..count).filter(|&i| !path_of(i).exists()).collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<usize>> = (0..workers)
        .map(|w| missing.iter().copied().skip(w).step_by(workers).collect())
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || -> Result<(), KeyCacheError> {
                    for i in chunk {
                        let path = path_of(i);
                        let name = path.display().to_string();
                        let id = Identity::generate(bits)
                            .map_err(|e| KeyCacheError::Key(name.clone(), e))?;
                        // Write then rename, so a half-written file is never taken for a key.
                        let tmp = path.with_extension("tmp");
                        std::fs::write(&tmp, id.private_pem().as_bytes())
                            .map_err(|e| KeyCacheError::Io(name.clone(), e))?;
                        std::fs::rename(&tmp, &path).map_err(|e| KeyCacheError::Io(name, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("key generation thread panicked"))
    })?;
    (0..count)
        .map(|i| {
            let path = path_of(i);
            let name = path.display().to_string();
            let pem =
                std::fs::read_to_string(&path).map_err(|e| KeyCacheError::Io(name.clone(), e))?;
            Identity::from_pem(&pem).map_err(|e| KeyCacheError::Key(name, e))
        })
        .collect()
}
