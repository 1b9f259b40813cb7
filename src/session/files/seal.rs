//! Sealing a file's manifest (to one member, with a fresh key wrapped as for `direct`; to all,
//! under this endpoint's sender key as for `@all`) with the file key its chunks are sealed with.

use super::super::*;
use super::{FileMeta, OutgoingFile};
use crate::protocol::{FileOut, Manifest};

impl Session {
    /// Seals a file's manifest for `to`: returns what to send (sender keys first, for `All`, then
    /// the manifest) and the sealer of its chunks.
    pub fn seal_file(
        &mut self,
        to: &Destination,
        meta: &FileMeta,
    ) -> Result<(Vec<ClientMsg>, OutgoingFile), SendError> {
        if self.name.is_none() {
            return Err(SendError::NotJoined);
        }
        let chunks = protocol::chunk_count(meta.size);
        let id = crypto::random_id();
        let file_key = zeroize::Zeroizing::new(crypto::random_bytes::<{ crypto::KEY_LEN }>());
        let manifest = Manifest {
            name: meta.name.clone(),
            mime: meta.mime.clone(),
            size: meta.size,
            chunks,
            sha256: meta.sha256.clone(),
            key: b64(file_key.as_slice()),
            kind: meta.kind,
            duration_ms: None,
            width: None,
            height: None,
        };
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&manifest).expect("encodes"));
        if plain.len() > protocol::MAX_MANIFEST {
            return Err(SendError::TooLong(plain.len()));
        }
        let ts = self.now();
        let out = match to {
            Destination::Group(group) => {
                let (mut out, at, skid, n, key) = self.next_group_key(group)?;
                let (iv, ct) = crypto::aes_seal(&key, &plain);
                let (iv, ciphertext) = (b64(&iv), b64(&ct));
                let signed = protocol::file_group_bytes(
                    &id,
                    ts,
                    self.key_id(),
                    group,
                    at.epoch,
                    &skid,
                    n,
                    meta.size,
                    chunks,
                    &iv,
                    &ciphertext,
                );
                out.push(ClientMsg::File(FileOut {
                    id: id.clone(),
                    ts,
                    to: group.clone(),
                    size: meta.size,
                    chunks,
                    iv,
                    ciphertext,
                    keys: None,
                    skid: Some(skid),
                    n: Some(n),
                    epoch: Some(at.epoch),
                    signature: b64(&self.me.sign(&signed)),
                }));
                out
            }
            Destination::Direct(to) => {
                if !self.peers.contains_key(to) {
                    return Err(SendError::UnknownMember(to.clone()));
                }
                let recipient = self
                    .keys
                    .get(to)
                    .ok_or_else(|| SendError::NoKey(to.clone()))?;
                let key = zeroize::Zeroizing::new(crypto::random_bytes::<{ crypto::KEY_LEN }>());
                let (iv, ct) = crypto::aes_seal(&key, &plain);
                let (iv, ciphertext) = (b64(&iv), b64(&ct));
                let mut keys = std::collections::BTreeMap::new();
                keys.insert(to.clone(), b64(&recipient.wrap(key.as_slice())));
                if to != self.key_id() {
                    let own = b64(&self.me.public().wrap(key.as_slice()));
                    keys.insert(self.key_id().to_string(), own);
                }
                let signed = protocol::file_direct_bytes(
                    &id,
                    ts,
                    self.key_id(),
                    to,
                    meta.size,
                    chunks,
                    &iv,
                    &ciphertext,
                );
                let f = FileOut {
                    id: id.clone(),
                    ts,
                    to: to.clone(),
                    size: meta.size,
                    chunks,
                    iv,
                    ciphertext,
                    keys: Some(keys),
                    skid: None,
                    n: None,
                    epoch: None,
                    signature: b64(&self.me.sign(&signed)),
                };
                vec![ClientMsg::File(f)]
            }
            Destination::All => {
                let (mut out, n, key) = self.next_own_key()?;
                let (iv, ct) = crypto::aes_seal(&key, &plain);
                let (iv, ciphertext) = (b64(&iv), b64(&ct));
                let skid = self.own.skid.clone();
                let signed = protocol::file_all_bytes(
                    &id,
                    ts,
                    self.key_id(),
                    &skid,
                    n,
                    meta.size,
                    chunks,
                    &iv,
                    &ciphertext,
                );
                out.push(ClientMsg::File(FileOut {
                    id: id.clone(),
                    ts,
                    to: "all".into(),
                    size: meta.size,
                    chunks,
                    iv,
                    ciphertext,
                    keys: None,
                    skid: Some(skid),
                    n: Some(n),
                    epoch: None,
                    signature: b64(&self.me.sign(&signed)),
                }));
                out
            }
        };
        Ok((
            out,
            OutgoingFile {
                id,
                size: meta.size,
                chunks,
                key: file_key,
            },
        ))
    }
}
