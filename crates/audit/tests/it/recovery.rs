//! Opening an existing log: resuming after a crash and refusing a damaged one.

use std::io::Write;

use keyward_audit::{AuditError, AuditLog, verify};

use crate::{Fixture, entry, test_key};

fn append_raw(fixture: &Fixture, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&fixture.path)
        .expect("open log");
    file.write_all(bytes).expect("append bytes");
}

#[tokio::test]
async fn partial_last_line_is_dropped_at_open() {
    let fixture = Fixture::new();
    fixture.write_entries(3).await;
    let clean_len = std::fs::metadata(&fixture.path).expect("metadata").len();
    append_raw(&fixture, br#"{"seq":4,"time":"2026-01-0"#);
    let report = verify(&fixture.path).expect("verifies");
    assert!(report.partial_last_line);
    let warnings = report.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("incomplete line after entry 3"),
        "{warnings:?}"
    );

    let log = fixture.open();

    assert_eq!(
        std::fs::metadata(&fixture.path).expect("metadata").len(),
        clean_len
    );
    let seq = log.append(entry(4)).await.expect("append after recovery");
    log.close();
    assert_eq!(seq, 4);
    let report = verify(&fixture.path).expect("log verifies");
    assert_eq!(report.entries, 4);
    assert!(!report.partial_last_line);
    assert_eq!(report.warnings(), Vec::<String>::new());
}

#[tokio::test]
async fn log_of_only_partial_line_starts_over() {
    let fixture = Fixture::new();
    std::fs::write(&fixture.path, br#"{"seq":1,"ti"#).expect("write partial line");

    let log = fixture.open();
    let seq = log.append(entry(1)).await.expect("append");
    log.close();

    assert_eq!(seq, 1);
    assert_eq!(verify(&fixture.path).expect("log verifies").entries, 1);
}

#[tokio::test]
async fn truncated_log_is_refused_at_open() {
    let fixture = Fixture::new();
    fixture.write_entries(5).await;
    let mut lines = fixture.read_lines();
    lines.truncate(3);
    fixture.write_lines(&lines);

    let result = AuditLog::open(&fixture.path, test_key(1));

    let Err(AuditError::Corrupt(message)) = result else {
        panic!("expected a corrupt-log error, got {result:?}");
    };
    assert!(message.contains("shorter than its head file"), "{message}");
    assert!(message.contains("keyward audit verify"), "{message}");
}

#[tokio::test]
async fn refused_open_leaves_partial_line() {
    let fixture = Fixture::new();
    fixture.write_entries(3).await;
    let lines = fixture.read_lines();
    std::fs::write(&fixture.path, lines[..2].join("\n")).expect("rewrite log");
    let before = std::fs::read(&fixture.path).expect("read log");

    let result = AuditLog::open(&fixture.path, test_key(1));

    assert!(matches!(result, Err(AuditError::Corrupt(_))), "{result:?}");
    assert_eq!(std::fs::read(&fixture.path).expect("read log"), before);
}

#[tokio::test]
async fn edited_last_line_is_refused_at_open() {
    let fixture = Fixture::new();
    fixture.write_entries(3).await;
    let mut lines = fixture.read_lines();
    lines[2] = lines[2].replace("secret-3", "secret-9");
    fixture.write_lines(&lines);

    let result = AuditLog::open(&fixture.path, test_key(1));

    let Err(AuditError::Corrupt(message)) = result else {
        panic!("expected a corrupt-log error, got {result:?}");
    };
    assert!(message.contains("seq 3"), "{message}");
    assert!(message.contains("does not match its hash"), "{message}");
}

#[tokio::test]
async fn head_behind_log_is_accepted() {
    let fixture = Fixture::new();
    fixture.write_entries(3).await;
    let old_head = std::fs::read(fixture.head_path()).expect("read head");
    fixture.write_entries(2).await;
    // A crash after syncing the log but before rewriting the head leaves this state.
    std::fs::write(fixture.head_path(), old_head).expect("restore old head");

    let report = verify(&fixture.path).expect("head behind verifies");
    assert!(report.head_checked);
    assert_eq!(report.last_seq, 5);

    let log = fixture.open();
    let seq = log.append(entry(6)).await.expect("append");
    log.close();
    assert_eq!(seq, 6);
    assert_eq!(verify(&fixture.path).expect("log verifies").last_seq, 6);
}

#[tokio::test]
async fn missing_head_is_recreated_at_open() {
    let fixture = Fixture::new();
    fixture.write_entries(3).await;
    std::fs::remove_file(fixture.head_path()).expect("remove head");

    fixture.open().close();

    let report = verify(&fixture.path).expect("log verifies");
    assert!(report.head_checked);
    assert_eq!(report.last_seq, 3);
}

#[tokio::test]
async fn malformed_head_is_refused_at_open() {
    let fixture = Fixture::new();
    fixture.write_entries(1).await;
    std::fs::write(fixture.head_path(), "{}").expect("overwrite head");

    let result = AuditLog::open(&fixture.path, test_key(1));

    assert!(matches!(result, Err(AuditError::Corrupt(_))), "{result:?}");
}

#[tokio::test]
async fn new_log_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let fixture = Fixture::new();
    fixture.open().close();

    for path in [fixture.path.clone(), fixture.head_path()] {
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
    }
}

#[tokio::test]
async fn missing_directory_error_names_path() {
    let fixture = Fixture::new();
    let path = fixture.path.join("missing").join("audit.log");

    let error = AuditLog::open(&path, test_key(1)).expect_err("directory is missing");

    assert!(matches!(error, AuditError::Io(_)), "{error:?}");
    assert!(error.to_string().contains("missing"), "{error}");
}
