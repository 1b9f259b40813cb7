//! `dyspatcher verify-transcript FILE`: walks a transcript's hash chain from its first line and
//! names the first line that was altered, removed, moved or cut, or says the chain is intact.

use std::fmt;
use std::path::Path;

use super::{chain, CONTINUATION, GENESIS, HASH_HEX};

/// A transcript whose chain holds from the first line to the last.
#[derive(Debug, PartialEq, Eq)]
pub struct Intact {
    /// Its lines.
    pub lines: u64,
    /// The last line's hash ([`GENESIS`] for an empty file).
    pub last: String,
    /// Whether the last line is the server's `* stopped`.
    pub stopped: bool,
}

/// What is wrong with the first bad line.
#[derive(Debug, PartialEq, Eq)]
pub enum Fault {
    /// The line does not start with a hash and a line number: added, or damaged.
    NotALine,
    /// Its text (or its hash) was changed: they no longer match.
    Altered,
    /// Lines `from` to `to` of the transcript are missing before this one.
    Removed {
        /// The first missing line.
        from: u64,
        /// The last missing line.
        to: u64,
    },
    /// The line is line `number` of the transcript, which belongs elsewhere; the line that
    /// belongs here is at `here_is_at` of the file, if anywhere.
    Moved {
        /// The number the line carries.
        number: u64,
        /// Where the line that belongs here is.
        here_is_at: Option<u64>,
    },
    /// The line breaks off and line `resumes` of the transcript begins in its middle: what was
    /// between was cut out.
    CutShort {
        /// The number of the line that begins inside this one.
        resumes: u64,
    },
    /// The file ends in the middle of this line.
    CutOff,
}

/// The first bad line and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken {
    /// Its number in the file, from 1.
    pub line: u64,
    /// What is wrong.
    pub fault: Fault,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.line;
        write!(f, "line {n}: ")?;
        match &self.fault {
            Fault::NotALine => write!(
                f,
                "not a transcript line: it does not start with a {HASH_HEX}-digit hash and its \
                 line number (added, or damaged)"
            ),
            Fault::Altered => write!(f, "altered: its text does not match its hash"),
            Fault::Removed { from, to } if from == to => write!(
                f,
                "removed: line {from} of the transcript is missing before it (this is line {})",
                to + 1
            ),
            Fault::Removed { from, to } => write!(
                f,
                "removed: lines {from} to {to} of the transcript are missing before it (this is \
                 line {})",
                to + 1
            ),
            Fault::Moved {
                number,
                here_is_at: Some(at),
            } => write!(
                f,
                "reordered: this is line {number} of the transcript; line {n} is at line {at} of \
                 the file"
            ),
            Fault::Moved { number, .. } if *number < n => write!(
                f,
                "reordered: this is line {number} of the transcript, which comes earlier (moved or \
                 copied here)"
            ),
            Fault::Moved { number, .. } => write!(
                f,
                "reordered: this is line {number} of the transcript, and line {n} is nowhere"
            ),
            Fault::CutShort { resumes } => write!(
                f,
                "truncated: it breaks off and line {resumes} of the transcript begins in its \
                 middle (what was between was cut out)"
            ),
            Fault::CutOff => write!(
                f,
                "cut off: the file ends in the middle of this line (a crash while writing, or the \
                 file was cut)"
            ),
        }
    }
}

/// One line, taken apart.
struct Parsed<'a> {
    hash: &'a str,
    number: u64,
    /// Everything after the hash and its space: what the hash covers.
    rest: &'a [u8],
    /// Everything after the number and its space.
    body: &'a [u8],
}

fn parse(line: &[u8]) -> Option<Parsed<'_>> {
    let hash = line.get(..HASH_HEX)?;
    if !hash.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let rest = line
        .get(HASH_HEX + 1..)
        .filter(|_| line[HASH_HEX] == b' ')?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let digits = &rest[..space];
    if digits.is_empty()
        || digits.len() > 19
        || digits[0] == b'0'
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let number = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(Parsed {
        hash: std::str::from_utf8(hash).ok()?,
        number,
        rest,
        body: &rest[space + 1..],
    })
}

/// Whether `body` is the server's last line, `TIMESTAMP * stopped`.
fn is_stop(body: &[u8]) -> bool {
    const STAMP: usize = "2026-01-01T00:00:00Z".len();
    body.len() == STAMP + " * stopped".len()
        && body[STAMP..] == *b" * stopped"
        && !body.starts_with(CONTINUATION.as_bytes())
}

/// Checks the chain of a whole transcript.
pub fn verify(bytes: &[u8]) -> Result<Intact, Broken> {
    let finished = bytes.is_empty() || bytes.ends_with(b"\n");
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if finished {
        lines.pop();
    }
    let parsed: Vec<Option<Parsed<'_>>> = lines.iter().map(|l| parse(l)).collect();
    let mut prev = GENESIS;
    for (i, line) in parsed.iter().enumerate() {
        let n = i as u64 + 1;
        let unfinished = !finished && i + 1 == lines.len();
        let broken = |fault| Err(Broken { line: n, fault });
        let Some(p) = line else {
            if unfinished {
                return broken(Fault::CutOff);
            }
            return broken(cut_short(&lines, &parsed, i).unwrap_or(Fault::NotALine));
        };
        if p.number != n && renumbered_fits(prev, n, p) {
            // Only its number was changed.
            return broken(Fault::Altered);
        }
        if p.number > n {
            let here_is_at = parsed[i + 1..]
                .iter()
                .position(|q| q.as_ref().is_some_and(|q| q.number == n))
                .map(|j| (i + 1 + j) as u64 + 1);
            return broken(match here_is_at {
                Some(_) => Fault::Moved {
                    number: p.number,
                    here_is_at,
                },
                None => Fault::Removed {
                    from: n,
                    to: p.number - 1,
                },
            });
        }
        if p.number < n {
            return broken(Fault::Moved {
                number: p.number,
                here_is_at: None,
            });
        }
        if chain(prev, p.rest) != p.hash {
            if unfinished {
                return broken(Fault::CutOff);
            }
            return broken(cut_short(&lines, &parsed, i).unwrap_or(Fault::Altered));
        }
        prev = p.hash;
    }
    Ok(Intact {
        lines: lines.len() as u64,
        last: prev.to_string(),
        stopped: parsed
            .last()
            .and_then(Option::as_ref)
            .is_some_and(|p| is_stop(p.body)),
    })
}

/// Whether line `n` would chain to `prev` with the number `n` instead of the one it carries.
fn renumbered_fits(prev: &str, n: u64, p: &Parsed<'_>) -> bool {
    let mut rest = format!("{n} ").into_bytes();
    rest.extend_from_slice(p.body);
    chain(prev, &rest) == p.hash
}

/// Whether a later line of the transcript begins in the middle of line `i`: the file was cut
/// from there to that line's start. The line after line `i` must chain to the one found.
fn cut_short(lines: &[&[u8]], parsed: &[Option<Parsed<'_>>], i: usize) -> Option<Fault> {
    let n = i as u64 + 1;
    let line = lines[i];
    (1..line.len()).find_map(|at| {
        let inner = parse(&line[at..]).filter(|q| q.number > n)?;
        let next_fits = match parsed.get(i + 1) {
            None => true,
            Some(None) => false,
            Some(Some(next)) => {
                next.number == inner.number + 1 && chain(inner.hash, next.rest) == next.hash
            }
        };
        next_fits.then_some(Fault::CutShort {
            resumes: inner.number,
        })
    })
}

/// Runs `verify-transcript`: prints the verdict; exit code 0 when intact, 1 when broken, 2 when
/// the file cannot be read.
pub fn run(path: &Path) -> i32 {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "dyspatcher: verify-transcript: cannot read `{}`: {e}",
                path.display()
            );
            return 2;
        }
    };
    match verify(&bytes) {
        Ok(ok) => {
            println!("{} lines, chain intact; last hash {}", ok.lines, ok.last);
            if ok.stopped {
                println!("It ends with the server's `* stopped` line.");
            } else {
                println!(
                    "It does not end with the server's `* stopped` line: the server is still \
                     running, or it crashed, or its last lines were removed."
                );
            }
            println!(
                "Lines removed from the end cannot be told from a transcript that ends there \
                 (after a crash, say): compare the last hash with the one the server printed when \
                 it stopped."
            );
            0
        }
        Err(broken) => {
            println!("{}: {broken}", path.display());
            match broken.line {
                1 => {}
                2 => println!("line 1 is intact"),
                n => println!("lines 1 to {} are intact", n - 1),
            }
            1
        }
    }
}

#[cfg(test)]
mod tests;
