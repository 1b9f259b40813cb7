//! The transcript's hash chain with the real executable: a server writes one (with multi-line
//! entries), `dyspatcher verify-transcript` finds it intact, and names the first bad line of
//! copies that were altered, had lines removed or reordered, or were cut in the middle or at
//! the end.
mod child;
mod common;

use child::Child;

/// The lines of a real transcript: a message from a member (two lines), the help (many lines),
/// joins and the stop. Returns its path and the last hash the server printed as it stopped.
fn write_a_transcript(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let path = dir.join("chat.log");
    let key = common::fixture("admin.pem");
    let mut server = Child::start(
        &[
            "-p",
            "0",
            "--transcription",
            path.to_str().unwrap(),
            "--admin-private-key",
            key.to_str().unwrap(),
        ],
        &dir.join("home"),
    );
    let url = format!("ws://{}/ws", server.addr());
    server.wait_for("admin connected");
    let alice = smol::block_on(async {
        let key = common::keys(1)[0].clone();
        let mut c = common::within(
            10,
            "join",
            dyspatcher::client::Client::connect(&url, "alice", key, None),
        )
        .await
        .unwrap();
        common::wait_joined(&mut c, "ADMIN").await;
        c.send_direct("ADMIN", "first line\nsecond line")
            .await
            .unwrap();
        c
    });
    server.wait_for("→ ADMIN: first line");
    server.type_line("/help");
    server.wait_for("/panic");
    server.signal("TERM");
    let (status, rest, _) = server.finish();
    assert_eq!(status.code(), Some(0));
    let head = rest
        .iter()
        .find(|l| l.starts_with("transcript "))
        .unwrap_or_else(|| panic!("no last hash in {rest:?}"));
    let last = head.rsplit(' ').next().unwrap().to_string();
    smol::block_on(alice.close());
    (path, last)
}

fn verify(path: &std::path::Path) -> (Option<i32>, String) {
    let (code, out, err) = child::run(&["verify-transcript", path.to_str().unwrap()]);
    (code, out + &err)
}

/// Writes `lines` (with a newline after each, unless `unfinished`) to a new file in `dir`.
fn copy(
    dir: &std::path::Path,
    name: &str,
    lines: &[String],
    unfinished: bool,
) -> std::path::PathBuf {
    let mut text = lines.join("\n");
    if !unfinished {
        text.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_real_binary_verifies_a_transcript_and_names_the_first_bad_line() {
    let dir = child::temp_dir("transcript-verify");
    let (path, last) = write_a_transcript(&dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    assert!(n > 20, "{text}");
    // Every line: hash, its number, then its body.
    for (i, line) in lines.iter().enumerate() {
        let mut parts = line.splitn(3, ' ');
        let (hash, number) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(
            hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{line}"
        );
        assert_eq!(number, (i + 1).to_string(), "{line}");
    }
    let second = lines
        .iter()
        .position(|l| l.ends_with("     second line"))
        .unwrap_or_else(|| panic!("the message's second line is a continuation:\n{text}"));
    assert!(lines[second - 1].ends_with("→ ADMIN: first line"));

    let (code, out) = verify(&path);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("{n} lines, chain intact; last hash {last}")),
        "{out}"
    );
    assert!(
        out.contains("It ends with the server's `* stopped` line."),
        "{out}"
    );
    assert!(
        out.contains("cannot be told from a transcript that ends there"),
        "{out}"
    );

    // Altered: the continuation line of the message.
    let mut altered = lines.clone();
    altered[second] = altered[second].replace("second", "SECOND");
    let (code, out) = verify(&copy(&dir, "altered", &altered, false));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("line {}: altered", second + 1)),
        "{out}"
    );
    assert!(
        out.contains(&format!("lines 1 to {second} are intact")),
        "{out}"
    );

    // Removed: the message's first line.
    let mut removed = lines.clone();
    removed.remove(second - 1);
    let (code, out) = verify(&copy(&dir, "removed", &removed, false));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "line {second}: removed: line {second} of the transcript"
        )),
        "{out}"
    );

    // Reordered: the message's two lines swapped.
    let mut reordered = lines.clone();
    reordered.swap(second - 1, second);
    let (code, out) = verify(&copy(&dir, "reordered", &reordered, false));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("line {second}: reordered")), "{out}");

    // Truncated in the middle: from inside the message's first line to the start of line 4 after.
    let mut cut = lines[..second - 1].to_vec();
    cut.push(format!("{}{}", &lines[second - 1][..30], lines[second + 3]));
    cut.extend_from_slice(&lines[second + 4..]);
    let (code, out) = verify(&copy(&dir, "cut", &cut, false));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "line {second}: truncated: it breaks off and line {} of the transcript begins",
            second + 4
        )),
        "{out}"
    );

    // Cut off in the middle of the last line (a crash while writing).
    let mut end = lines[..n - 1].to_vec();
    end.push(lines[n - 1][..25].to_string());
    let (code, out) = verify(&copy(&dir, "crashed", &end, true));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("line {n}: cut off")), "{out}");

    // Its last lines deleted: the chain holds, but the stop line is missing.
    let (code, out) = verify(&copy(&dir, "tail", &lines[..n - 2], false));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("{} lines, chain intact", n - 2)),
        "{out}"
    );
    assert!(
        out.contains("does not end with the server's `* stopped` line"),
        "{out}"
    );

    let (code, out) = verify(&dir.join("no-such-file"));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("cannot read") && out.contains("no-such-file"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
