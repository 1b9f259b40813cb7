//! Fuzzes the allow-list CSV parser: arbitrary bytes, read as the server reads the file (lossy
//! UTF-8), must give a list whose every entry is well formed and a reason for every refused row.
#![no_main]

use std::collections::HashSet;

use dyspatcher::allowlist::AllowList;
use dyspatcher::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let loaded = AllowList::parse(&text);
    let mut keys = HashSet::new();
    let mut names = HashSet::new();
    for (key_id, name) in loaded.list.entries() {
        assert!(protocol::is_hex(key_id, 64), "listed a bad key ID");
        assert!(protocol::valid_user_name(name) || protocol::valid_admin_name(name));
        assert!(keys.insert(key_id.clone()), "a key ID listed twice");
        assert!(names.insert(name.clone()), "a name listed twice");
        assert_eq!(loaded.list.name_of(key_id), Some(name.as_str()));
    }
    for problem in &loaded.problems {
        assert!(
            problem.starts_with("line "),
            "a problem without its line: {problem}"
        );
    }
});
