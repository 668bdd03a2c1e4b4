//! `verify` finds edits, removals, reordering and truncation, and names where.

use keyward_audit::{VerifyError, verify};

use crate::Fixture;

/// Writes a log of `count` entries and returns its fixture.
async fn log_with_entries(count: u64) -> Fixture {
    let fixture = Fixture::new();
    fixture.write_entries(count).await;
    fixture
}

#[tokio::test]
async fn edited_entry_names_its_line() {
    let fixture = log_with_entries(10).await;
    let mut lines = fixture.read_lines();
    lines[4] = lines[4].replace("secret-5", "secret-6");
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::Edited { line: 5, seq: 5 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn one_flipped_byte_is_found() {
    let fixture = log_with_entries(10).await;
    let mut bytes = std::fs::read(&fixture.path).expect("read log");
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    // A byte inside the time field of line 6, which stays a valid digit.
    let offset = line_starts[5] + r#"{"seq":6,"time":"20"#.len();
    bytes[offset] = if bytes[offset] == b'9' { b'8' } else { b'9' };
    std::fs::write(&fixture.path, bytes).expect("rewrite log");

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::Edited { line: 6, seq: 6 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn edited_seq_is_found() {
    let fixture = log_with_entries(10).await;
    let mut lines = fixture.read_lines();
    lines[2] = lines[2].replacen(r#"{"seq":3,"#, r#"{"seq":33,"#, 1);
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::Edited { line: 3, seq: 33 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn removed_middle_line_is_found() {
    let fixture = log_with_entries(10).await;
    let mut lines = fixture.read_lines();
    lines.remove(4);
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Removed {
                line: 5,
                expected_seq: 5,
                found_seq: 6
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn removed_first_line_is_found() {
    let fixture = log_with_entries(3).await;
    let mut lines = fixture.read_lines();
    lines.remove(0);
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Removed {
                line: 1,
                expected_seq: 1,
                found_seq: 2
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn swapped_lines_are_found() {
    let fixture = log_with_entries(10).await;
    let mut lines = fixture.read_lines();
    lines.swap(3, 4);
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Reordered {
                line: 4,
                expected_seq: 4,
                found_seq: 5
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn repeated_line_is_found() {
    let fixture = log_with_entries(5).await;
    let mut lines = fixture.read_lines();
    let copy = lines[1].clone();
    lines.insert(2, copy);
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Reordered {
                line: 3,
                expected_seq: 3,
                found_seq: 2
            })
        ),
        "{result:?}"
    );
}

/// Recomputes a line's hash after changing it, as someone hiding an edit would.
fn rehash(line: &str, find: &str, replace: &str) -> String {
    let hash_start = line.rfind(r#","hash":""#).expect("line has a hash");
    let prefix = format!("{}}}", &line[..hash_start].replace(find, replace));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, prefix.as_bytes());

    format!(
        r#"{},"hash":"{}"}}"#,
        &prefix[..prefix.len() - 1],
        hex::encode(digest.as_ref())
    )
}

#[tokio::test]
async fn rehashed_edit_breaks_next_link() {
    let fixture = log_with_entries(10).await;
    let mut lines = fixture.read_lines();
    lines[4] = rehash(&lines[4], "secret-5", "secret-X");
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::BrokenChain { line: 6, seq: 6 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn rehashed_last_line_mismatches_head() {
    let fixture = log_with_entries(4).await;
    let mut lines = fixture.read_lines();
    lines[3] = rehash(&lines[3], "secret-4", "secret-X");
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::HeadMismatch { line: 4, seq: 4 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn removed_last_line_is_truncation() {
    let fixture = log_with_entries(10).await;
    let mut lines = fixture.read_lines();
    lines.pop();
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Truncated {
                last_seq: 9,
                head_seq: 10
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn cut_final_newline_is_truncation() {
    let fixture = log_with_entries(10).await;
    let bytes = std::fs::read(&fixture.path).expect("read log");
    std::fs::write(&fixture.path, &bytes[..bytes.len() - 1]).expect("rewrite log");

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Truncated {
                last_seq: 9,
                head_seq: 10
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn removed_last_line_and_newline_is_truncation() {
    let fixture = log_with_entries(10).await;
    let lines = fixture.read_lines();
    std::fs::write(&fixture.path, lines[..9].join("\n")).expect("rewrite log");

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Truncated {
                last_seq: 8,
                head_seq: 10
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn emptied_log_is_truncation() {
    let fixture = log_with_entries(3).await;
    std::fs::write(&fixture.path, "").expect("empty log");

    let result = verify(&fixture.path);

    assert!(
        matches!(
            result,
            Err(VerifyError::Truncated {
                last_seq: 0,
                head_seq: 3
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn garbage_line_is_malformed() {
    let fixture = log_with_entries(5).await;
    let mut lines = fixture.read_lines();
    lines[2] = "not json".to_owned();
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::Malformed { line: 3, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn missing_head_still_checks_chain() {
    let fixture = log_with_entries(5).await;
    std::fs::remove_file(fixture.head_path()).expect("remove head");

    let report = verify(&fixture.path).expect("chain verifies without head");

    assert_eq!(report.entries, 5);
    assert!(!report.head_checked);
    let warnings = report.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no head file"), "{warnings:?}");
}

#[tokio::test]
async fn missing_head_does_not_hide_edits() {
    let fixture = log_with_entries(5).await;
    std::fs::remove_file(fixture.head_path()).expect("remove head");
    let mut lines = fixture.read_lines();
    lines[1] = lines[1].replace("secret-2", "secret-7");
    fixture.write_lines(&lines);

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::Edited { line: 2, seq: 2 })),
        "{result:?}"
    );
}

#[tokio::test]
async fn malformed_head_is_reported() {
    let fixture = log_with_entries(2).await;
    std::fs::write(fixture.head_path(), "garbage").expect("overwrite head");

    let result = verify(&fixture.path);

    assert!(
        matches!(result, Err(VerifyError::MalformedHead { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn error_messages_name_line_and_seq() {
    let fixture = log_with_entries(10).await;
    let mut lines = fixture.read_lines();
    lines.remove(6);
    fixture.write_lines(&lines);

    let message = verify(&fixture.path)
        .expect_err("removal is found")
        .to_string();

    assert!(message.contains("line 7"), "{message}");
    assert!(message.contains("seq 7"), "{message}");
    assert!(message.contains("seq 8"), "{message}");
}
