//! Appending, chaining and resuming a log.

use std::collections::HashSet;

use keyward_audit::{AuditLog, verify};
use serde_json::Value;

use crate::{Fixture, entry, test_key};

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn sequential_appends_verify() {
    let fixture = Fixture::new();
    fixture.write_entries(100).await;

    let report = verify(&fixture.path).expect("log verifies");

    assert_eq!(report.entries, 100);
    assert_eq!(report.last_seq, 100);
    assert!(report.head_checked);
    assert!(!report.partial_last_line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_contiguous_seqs() {
    let fixture = Fixture::new();
    let log = fixture.open();

    let tasks: Vec<_> = (1..=200)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(entry(n)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.expect("task ran").expect("append entry"));
    }
    log.close();

    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 200);
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());

    let report = verify(&fixture.path).expect("log verifies");
    assert_eq!(report.entries, 200);
    assert_eq!(report.last_seq, 200);
}

#[tokio::test]
async fn line_has_documented_layout() {
    let fixture = Fixture::new();
    fixture.write_entries(2).await;

    let lines = fixture.read_lines();
    let first: Value = serde_json::from_str(&lines[0]).expect("line is JSON");
    let second: Value = serde_json::from_str(&lines[1]).expect("line is JSON");

    assert!(lines[0].starts_with(r#"{"seq":1,"time":""#), "{}", lines[0]);
    assert_eq!(first["prev"], ZERO_HASH);
    assert_eq!(second["prev"], first["hash"]);
    assert_eq!(first["entry"]["path"], "team/app/secret-1");

    let time = first["time"].as_str().expect("time is a string");
    assert_eq!(time.len(), "2026-01-02T03:04:05.123456789Z".len(), "{time}");
    assert!(time.ends_with('Z'), "{time}");

    let hash_field = format!(r#","hash":{}}}"#, first["hash"]);
    let prefix = format!(
        "{}}}",
        lines[0].strip_suffix(&hash_field).expect("hash is last")
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, prefix.as_bytes());
    assert_eq!(first["hash"], hex::encode(digest.as_ref()));
}

#[tokio::test]
async fn reopen_continues_chain() {
    let fixture = Fixture::new();
    fixture.write_entries(3).await;

    let log = fixture.open();
    let seq = log.append(entry(4)).await.expect("append after reopen");
    log.close();

    assert_eq!(seq, 4);
    let report = verify(&fixture.path).expect("log verifies");
    assert_eq!(report.entries, 4);
    assert!(report.head_checked);
}

#[tokio::test]
async fn report_matches_head_file() {
    let fixture = Fixture::new();
    fixture.write_entries(5).await;

    let report = verify(&fixture.path).expect("log verifies");
    let head = std::fs::read_to_string(fixture.head_path()).expect("read head");
    let head: Value = serde_json::from_str(head.trim_end()).expect("head is JSON");

    assert_eq!(head["seq"], 5);
    assert_eq!(head["hash"], report.last_hash);
    let last_line: Value =
        serde_json::from_str(fixture.read_lines().last().expect("log has lines"))
            .expect("line is JSON");
    assert_eq!(last_line["hash"], report.last_hash);
}

#[tokio::test]
async fn new_log_verifies_empty() {
    let fixture = Fixture::new();
    fixture.open().close();

    let report = verify(&fixture.path).expect("empty log verifies");

    assert_eq!(report.entries, 0);
    assert_eq!(report.last_seq, 0);
    assert_eq!(report.last_hash, ZERO_HASH);
    assert!(report.head_checked);
}

#[tokio::test]
async fn append_after_close_fails() {
    let fixture = Fixture::new();
    let log = fixture.open();
    let clone = log.clone();
    log.close();

    let result = clone.append(entry(1)).await;

    assert!(matches!(result, Err(keyward_audit::AuditError::Closed)));
}

#[tokio::test]
async fn second_open_of_same_log_fails() {
    let fixture = Fixture::new();
    let _log = fixture.open();

    let second = AuditLog::open(&fixture.path, test_key(1));

    let error = second.expect_err("second writer is rejected");
    assert!(error.to_string().contains("already open"), "{error}");
}

#[tokio::test]
async fn dropping_last_clone_releases_log() {
    let fixture = Fixture::new();
    let log = fixture.open();
    log.append(entry(1)).await.expect("append entry");
    drop(log);

    let reopened = fixture.open();
    let seq = reopened
        .append(entry(2))
        .await
        .expect("append after reopen");

    assert_eq!(seq, 2);
}

#[tokio::test]
async fn hmac_is_stable_per_key() {
    let first = Fixture::new();
    let second = Fixture::new();
    let log = first.open();
    let same_key = AuditLog::open(&second.path, test_key(1)).expect("open second log");
    let value = "s.rejected-token";

    assert_eq!(log.hmac(value), same_key.hmac(value));
    assert_ne!(log.hmac(value), value);
    assert!(log.hmac(value).starts_with("hmac-sha256:"));
}

#[tokio::test]
async fn hmac_differs_across_keys() {
    let first = Fixture::new();
    let second = Fixture::new();
    let log = first.open();
    let other_key = AuditLog::open(&second.path, test_key(2)).expect("open second log");

    assert_ne!(log.hmac("alice"), other_key.hmac("alice"));
}
