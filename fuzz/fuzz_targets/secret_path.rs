//! Fuzzes the secret path and folder parsers: arbitrary text must yield a path or an error,
//! never a panic, and every accepted path must obey the documented rules.

#![no_main]

use keyward_store::{FolderPath, MAX_PATH_LEN, SecretPath};
use libfuzzer_sys::fuzz_target;

fn assert_valid_segments(path: &str) {
    assert!(path.len() <= MAX_PATH_LEN, "over-long path accepted");
    for segment in path.split('/') {
        assert!(!segment.is_empty(), "empty segment accepted in {path:?}");
        assert!(
            segment != "." && segment != "..",
            "dot segment accepted in {path:?}"
        );
        assert!(
            segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "invalid character accepted in {path:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(path) = SecretPath::parse(text) {
        assert_eq!(path.as_str(), text, "a parsed path changed");
        assert_valid_segments(path.as_str());
    }

    if let Ok(folder) = FolderPath::parse(text) {
        let prefix = folder.as_prefix();
        if let Some(inner) = prefix.strip_suffix('/') {
            assert_valid_segments(inner);
        } else {
            assert!(prefix.is_empty(), "folder prefix {prefix:?} lacks its '/'");
        }
        let again = FolderPath::parse(prefix).expect("a folder's prefix parses again");
        assert_eq!(again.as_prefix(), prefix);
    }
});
