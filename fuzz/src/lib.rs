//! What the session target and the seed generator share: the fixture keys, the members they
//! make, the recipient's session as the server would have welcomed it, and how the harness
//! signs a message as its (malicious) sender would.

use std::sync::Arc;

use dyspatcher::crypto::Identity;
use dyspatcher::protocol::{self, Member, Options, ServerMsg};
use dyspatcher::session::Session;

/// A signature field with this value is replaced by the sender's real signature, and the
/// message's `ts` is then read relative to now: a member can sign anything it likes.
pub const SIGN: &str = "SIGN";

/// The keys of alice (who sends) and bob (who receives), from `tests/fixtures`.
pub fn keys() -> (Arc<Identity>, Arc<Identity>) {
    let load = |pem: &str| Arc::new(Identity::from_pem(pem).expect("fixture key"));
    (
        load(include_str!("../../tests/fixtures/alice.pem")),
        load(include_str!("../../tests/fixtures/bob.pem")),
    )
}

/// The member `name` with key `id`, as a welcome lists it.
pub fn member(name: &str, id: &Identity) -> Member {
    Member {
        name: name.into(),
        key_id: id.public().key_id().into(),
        admin: false,
    }
}

/// A session for `me` named `name`, joined with alice and bob as the only members.
pub fn joined(me: &Arc<Identity>, name: &str, alice: &Identity, bob: &Identity) -> Session {
    let mut s = Session::new(me.clone());
    let options = Options {
        admin_name: "ADMIN".into(),
        disable_all: false,
        only_admin: false,
        remember: true,
        groups: Default::default(),
    };
    s.join_local(
        name,
        vec![member("alice", alice), member("bobby", bob)],
        options,
    );
    // The keys a client would have fetched with `get_keys`.
    s.add_keys([alice.public().clone(), bob.public().clone()]);
    s
}

/// Signs `msg` as `sender` if its signature is [`SIGN`], with `ts` relative to `now`.
pub fn sign_as(sender: &Identity, msg: &mut ServerMsg, now: i64) {
    use base64::Engine;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
    match msg {
        ServerMsg::Direct(d) if d.signature == SIGN => {
            d.ts = now.wrapping_add(d.ts);
            let bytes =
                protocol::direct_bytes(&d.id, d.ts, &d.from.key_id, &d.to, &d.iv, &d.ciphertext);
            d.signature = b64(sender.sign(&bytes));
        }
        ServerMsg::All(a) if a.signature == SIGN => {
            a.ts = now.wrapping_add(a.ts);
            let bytes = protocol::all_bytes(
                &a.id,
                a.ts,
                &a.from.key_id,
                &a.skid,
                a.n,
                &a.iv,
                &a.ciphertext,
            );
            a.signature = b64(sender.sign(&bytes));
        }
        ServerMsg::SenderKey(k) if k.signature == SIGN => {
            let bytes = protocol::sender_key_bytes(&k.from.key_id, &k.skid, k.n, &k.commitment);
            k.signature = b64(sender.sign(&bytes));
        }
        _ => {}
    }
}
