//! Micro-benchmark: what opening one `@all` costs an endpoint (the admin's prompt runs the same
//! session): the signature check, the chain step and AES-GCM, with 4096-bit keys by default.
//!
//! `cargo run --release --example prompt_all -- [MESSAGES] [BITS]` (keys from the load
//! generator's cache, `~/.cache/dyspatcher/bench-keys`, made there if missing).

use std::sync::Arc;
use std::time::Instant;

use dyspatcher::protocol::{AllIn, ClientMsg, Member, Options, Sender, SenderKeyIn, ServerMsg};
use dyspatcher::session::{Event, Session};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let bits: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let dir = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
        .join(".cache/dyspatcher/bench-keys");
    let keys = dyspatcher::keycache::load_or_make(&dir, 2, bits).expect("keys");
    let mut keys = keys.into_iter().map(Arc::new);
    let (ka, kb) = (keys.next().unwrap(), keys.next().unwrap());
    let (mut a, mut b) = (Session::new(ka.clone()), Session::new(kb.clone()));
    let member = |s: &Session, name: &str| Member {
        name: name.into(),
        key_id: s.key_id().into(),
        admin: false,
    };
    let members = vec![member(&a, "alice"), member(&b, "bobby")];
    let options = Options {
        admin_name: "ADMIN".into(),
        disable_all: false,
        only_admin: false,
        remember: true,
        groups: Default::default(),
    };
    a.join_local("alice", members.clone(), options.clone());
    b.join_local("bobby", members, options);
    a.add_keys([kb.public().clone()]);
    b.add_keys([ka.public().clone()]);
    let from = Sender {
        name: "alice".into(),
        key_id: a.key_id().into(),
    };
    let text = "x".repeat(100);
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        for m in a.seal_all(&text).expect("seals") {
            match m {
                ClientMsg::SenderKey(k) => frames.push(ServerMsg::SenderKey(SenderKeyIn {
                    from: from.clone(),
                    skid: k.skid,
                    n: k.n,
                    commitment: k.commitment,
                    signature: k.signature,
                    wrapped: k.keys[b.key_id()].clone(),
                    group: None,
                })),
                ClientMsg::All(x) => frames.push(ServerMsg::All(AllIn {
                    id: x.id,
                    ts: x.ts,
                    from: from.clone(),
                    skid: x.skid,
                    n: x.n,
                    iv: x.iv,
                    ciphertext: x.ciphertext,
                    signature: x.signature,
                    via: None,
                })),
                _ => {}
            }
        }
    }
    let mut frames = frames.into_iter();
    // The sender key (one RSA-OAEP unwrap) is not what is measured.
    b.handle(frames.next().expect("the sender key comes first"));
    let started = Instant::now();
    let cpu0 = thread_cpu();
    let mut opened = 0;
    for f in frames {
        for e in b.handle(f).events {
            if matches!(e, Event::Message(_)) {
                opened += 1;
            }
        }
    }
    let cpu = thread_cpu() - cpu0;
    let took = started.elapsed();
    assert_eq!(opened, count, "every @all opened");
    println!(
        "{count} @all opened in {:.3} s ({:.3} s of CPU): {:.1} µs of CPU each ({bits}-bit sender key)",
        took.as_secs_f64(),
        cpu,
        cpu * 1e6 / count as f64
    );
}

/// CPU seconds this thread has used: the machine may be busy, the figure is ours alone.
fn thread_cpu() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `t`, which lives across the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}
