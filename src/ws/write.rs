//! Writing frames: each encoded once (a frame fanned out to many members is shared), and a batch
//! of them written with as few system calls as the stream allows.

use super::*;

fn header(opcode: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    out.push(0x80 | opcode);
    match len {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out
}

fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// A text frame holding `payload`.
///
/// ```
/// assert_eq!(&*dyspatcher::ws::text_frame(b"hi"), &[0x81, 2, b'h', b'i']);
/// ```
pub fn text_frame(payload: &[u8]) -> Frame {
    text_frame_of(&[payload])
}

/// A text frame whose payload is `parts` one after another, written straight into the shared
/// frame: one allocation and one copy, however large (the member list).
///
/// ```
/// assert_eq!(dyspatcher::ws::text_frame_of(&[b"h", b"i"]), dyspatcher::ws::text_frame(b"hi"));
/// ```
pub fn text_frame_of(parts: &[&[u8]]) -> Frame {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let head = header(OP_TEXT, len);
    let mut frame: Frame = std::iter::repeat_n(0u8, head.len() + len).collect();
    let out = Arc::get_mut(&mut frame).expect("a frame just made is not shared");
    let mut at = head.len();
    out[..at].copy_from_slice(&head);
    for p in parts {
        out[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    frame
}

/// A close frame with a code and a reason (cut to fit a control frame).
pub fn close_frame(code: u16, reason: &str) -> Frame {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &payload).into()
}

/// A ping frame.
pub fn ping_frame() -> Frame {
    encode(OP_PING, b"").into()
}

/// A pong frame answering a ping's payload.
pub fn pong_frame(payload: &[u8]) -> Frame {
    encode(OP_PONG, payload).into()
}

/// The payload of a frame encoded by this module (header skipped).
pub fn payload(frame: &[u8]) -> &[u8] {
    let skip = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => frame.len(),
    };
    &frame[skip.min(frame.len())..]
}

/// Writes every frame of `batch` with as few system calls as the stream allows, then flushes.
pub async fn write_batch<W: AsyncWrite + Unpin>(w: &mut W, batch: &[Frame]) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < batch.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&batch[index][offset..])
            .chain(batch[index + 1..].iter().map(|f| &f[..]))
            .take(256)
            .map(IoSlice::new)
            .collect();
        let mut written = w.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while index < batch.len() && written >= batch[index].len() - offset {
            written -= batch[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += written;
    }
    w.flush().await
}
