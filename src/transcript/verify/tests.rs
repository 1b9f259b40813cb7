//! Unit tests of the chain check: each kind of damage on a transcript made by the writer.

use super::super::entry;
use super::*;

/// A transcript of `entries`, as the writer makes it.
fn transcript(entries: &[&str]) -> Vec<String> {
    let (mut last, mut n, mut out) = (GENESIS.to_string(), 0, String::new());
    for (i, text) in entries.iter().enumerate() {
        let stamp = format!("2026-01-01T00:00:{i:02}Z");
        let (lines, l, m) = entry(&last, n, &stamp, text);
        out += &lines;
        (last, n) = (l, m);
    }
    out.lines().map(str::to_string).collect()
}

fn sample() -> Vec<String> {
    transcript(&[
        "* started",
        "alice (1f0c2a3b4c5d) → ADMIN: hello",
        "Commands:\n  @NAME text\n  @all text",
        "* bob (9a8b7c6d5e4f) joined",
        "* stopped",
    ])
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

fn fault(lines: &[String]) -> Broken {
    verify(&joined(lines)).unwrap_err()
}

#[test]
fn an_untouched_transcript_is_intact_and_ends_with_the_stop() {
    let lines = sample();
    assert_eq!(lines.len(), 7);
    let ok = verify(&joined(&lines)).unwrap();
    assert_eq!(ok.lines, 7);
    assert!(ok.stopped);
    assert_eq!(ok.last, lines[6][..HASH_HEX]);
    let ok = verify(b"").unwrap();
    assert_eq!(
        (ok.lines, ok.last.as_str(), ok.stopped),
        (0, GENESIS, false)
    );
}

#[test]
fn a_transcript_cut_at_a_line_end_is_intact_but_not_stopped() {
    let lines = sample();
    let ok = verify(&joined(&lines[..4])).unwrap();
    assert_eq!(ok.lines, 4);
    assert!(!ok.stopped);
}

#[test]
fn an_altered_line_is_named() {
    for (at, from, to) in [
        (1, "hello", "HELLO"),
        (3, "@NAME", "@EVE"),
        (0, "1 2026", "1 2025"),
    ] {
        let mut lines = sample();
        lines[at] = lines[at].replacen(from, to, 1);
        assert_eq!(
            fault(&lines),
            Broken {
                line: at as u64 + 1,
                fault: Fault::Altered
            },
            "{from}"
        );
    }
    // Only the number changed.
    let mut lines = sample();
    lines[4] = lines[4].replacen(" 5 ", " 9 ", 1);
    assert_eq!(
        fault(&lines),
        Broken {
            line: 5,
            fault: Fault::Altered
        }
    );
    // A hash changed to cover the edit breaks the next line's link instead.
    let mut lines = sample();
    lines[1] = lines[1].replacen("hello", "HELLO", 1);
    let rest = &lines[1][HASH_HEX + 1..];
    lines[1] = format!("{} {rest}", chain(&lines[0][..HASH_HEX], rest.as_bytes()));
    assert_eq!(fault(&lines).line, 3);
    assert_eq!(fault(&lines).fault, Fault::Altered);
}

#[test]
fn removed_lines_are_named_also_at_the_start_and_in_an_entry() {
    let mut lines = sample();
    lines.remove(1);
    let b = fault(&lines);
    assert_eq!(b.fault, Fault::Removed { from: 2, to: 2 });
    assert_eq!(b.line, 2);
    assert!(
        b.to_string()
            .contains("line 2 of the transcript is missing"),
        "{b}"
    );
    let mut lines = sample();
    lines.drain(3..5);
    assert_eq!(fault(&lines).fault, Fault::Removed { from: 4, to: 5 });
    let lines = sample()[2..].to_vec();
    assert_eq!(
        fault(&lines),
        Broken {
            line: 1,
            fault: Fault::Removed { from: 1, to: 2 }
        }
    );
}

#[test]
fn reordered_lines_are_named() {
    let mut lines = sample();
    lines.swap(1, 2);
    let b = fault(&lines);
    assert_eq!(
        b.fault,
        Fault::Moved {
            number: 3,
            here_is_at: Some(3)
        }
    );
    assert!(
        b.to_string().contains("line 2 is at line 3 of the file"),
        "{b}"
    );
    // A line copied further down.
    let mut lines = sample();
    lines.insert(4, lines[1].clone());
    let b = fault(&lines);
    assert_eq!(b.line, 5);
    assert_eq!(
        b.fault,
        Fault::Moved {
            number: 2,
            here_is_at: None
        }
    );
}

#[test]
fn a_line_cut_in_the_middle_of_the_file_is_named() {
    let lines = sample();
    // From the middle of line 2 to the start of line 5: one line of the file.
    let cut = format!("{}{}", &lines[1][..40], lines[4]);
    let mut damaged = vec![lines[0].clone(), cut];
    damaged.extend_from_slice(&lines[5..]);
    let b = fault(&damaged);
    assert_eq!(
        b,
        Broken {
            line: 2,
            fault: Fault::CutShort { resumes: 5 }
        }
    );
    assert!(b.to_string().starts_with("line 2: truncated"), "{b}");
}

#[test]
fn a_file_ending_mid_line_is_cut_off() {
    let lines = sample();
    let mut bytes = joined(&lines[..3]);
    bytes.extend_from_slice(&lines[3].as_bytes()[..30]);
    assert_eq!(
        verify(&bytes).unwrap_err(),
        Broken {
            line: 4,
            fault: Fault::CutOff
        }
    );
    // Cut inside the hash: not even a line.
    let mut bytes = joined(&lines[..3]);
    bytes.extend_from_slice(&lines[3].as_bytes()[..5]);
    assert_eq!(verify(&bytes).unwrap_err().fault, Fault::CutOff);
}

#[test]
fn foreign_lines_are_not_transcript_lines() {
    let mut lines = sample();
    lines.insert(2, "2026-01-01T00:00:01Z * something added".into());
    assert_eq!(
        fault(&lines),
        Broken {
            line: 3,
            fault: Fault::NotALine
        }
    );
    for bad in [
        "",
        "0123456789ABCDEF 1 x",
        "0123456789abcdef 01 x",
        "0123456789abcdef x",
    ] {
        assert!(parse(bad.as_bytes()).is_none(), "{bad:?}");
    }
}
