//! Durable audit appends: one appender at a time, and several concurrent appenders sharing the
//! writer thread's group commit.
//!
//! Run with `cargo bench -p keyward-audit`. Every [`AuditLog::append`] returns only after its
//! entry is written and `fdatasync`ed, so these figures depend on the disk more than on the
//! CPU. The log lives under Cargo's target directory, not `/tmp`, because `/tmp` may be a
//! tmpfs where a sync costs nothing.
//!
//! - `append/appenders/N`: N tasks on a two-worker tokio runtime, each appending entries one
//!   after another. Criterion's throughput is in entries.
//! - `bare_write_sync`: one `write` of an entry-sized line and one `fdatasync` on a plain
//!   file in the same directory, with no chain, head file or thread hop: the cost of the
//!   durability alone, which a lone appender cannot beat.
//!
//! After the groups it prints entries per second, entries per sync and the share of the bare
//! floor for each appender count, measured in the same run.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use keyward_audit::{AuditKey, AuditLog};
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::runtime::Runtime;

const APPENDERS: [usize; 4] = [1, 4, 16, 64];

/// Builds an entry shaped like the manager's `response` entry for a KV read.
fn entry(appender: usize, index: u64) -> Map<String, Value> {
    let value = json!({
        "type": "response",
        "request_id": format!("bench-{appender}-{index}"),
        "remote_addr": "127.0.0.1",
        "accessor": "8f3b6c1e2d4a5b6c7d8e9f0a1b2c3d4e",
        "operation": "kv.read",
        "path": "secret/data/team/service/db",
        "status": "ok",
        "version": 3,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("audit-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a scratch dir under the target directory")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start a tokio runtime")
}

/// Runs `appenders` tasks that append `per_appender` entries each; returns the elapsed time.
fn run_appenders(
    runtime: &Runtime,
    log: &AuditLog,
    appenders: usize,
    per_appender: u64,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..appenders)
            .map(|appender| {
                let log = log.clone();
                tokio::spawn(async move {
                    for index in 0..per_appender {
                        log.append(entry(appender, index)).await.expect("append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("appender task");
        }
        start.elapsed()
    })
}

fn open_bare_file(dir: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bare.log"))
        .expect("open the bare file")
}

fn bare_write_sync(file: &mut File, line: &[u8]) {
    file.write_all(line).expect("write");
    file.sync_data().expect("fdatasync");
}

fn entry_line() -> Vec<u8> {
    let mut line = Value::Object(entry(0, 0)).to_string().into_bytes();
    line.push(b'\n');
    line
}

fn append(c: &mut Criterion) {
    let runtime = runtime();
    let dir = scratch_dir();
    let log = AuditLog::open(&dir.path().join("audit.log"), AuditKey::from_bytes([7; 32]))
        .expect("open the audit log");
    let mut group = c.benchmark_group("append");

    for appenders in APPENDERS {
        group.throughput(Throughput::Elements(appenders as u64));
        group.bench_with_input(
            BenchmarkId::new("appenders", appenders),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iterations| run_appenders(&runtime, &log, appenders, iterations));
            },
        );
    }
    group.finish();
    log.close();

    let mut file = open_bare_file(dir.path());
    let line = entry_line();
    c.benchmark_group("bare_write_sync")
        .throughput(Throughput::Elements(1))
        .bench_function("entry_line", |b| {
            b.iter(|| bare_write_sync(&mut file, black_box(&line)));
        });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = append
}

/// Runs the criterion groups, then prints one table with the append rate for each appender
/// count next to the bare write-and-sync rate, measured in the same run.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_rate_table();
}

/// Median of 5 rounds of `op`, each returning (entries, elapsed).
fn median_rate(mut op: impl FnMut() -> (u64, Duration)) -> f64 {
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let (entries, elapsed) = op();
            entries as f64 / elapsed.as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn print_rate_table() {
    let runtime = runtime();
    let dir = scratch_dir();
    let mut file = open_bare_file(dir.path());
    let line = entry_line();
    let bare_rate = median_rate(|| {
        let start = Instant::now();
        for _ in 0..200 {
            bare_write_sync(&mut file, &line);
        }
        (200, start.elapsed())
    });

    println!();
    println!(
        "Durable audit appends (median of 5 rounds; share = append rate / bare write+fdatasync rate)"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>8}",
        "appenders", "entries/s", "syncs", "entries/sync", "share"
    );
    for appenders in APPENDERS {
        let path = dir.path().join(format!("audit-{appenders}.log"));
        let log = AuditLog::open(&path, AuditKey::from_bytes([7; 32])).expect("open the audit log");
        let per_appender = (2_000 / appenders as u64).max(20);
        let syncs_before = log.sync_count();
        let mut entries = 0;
        let rate = median_rate(|| {
            let elapsed = run_appenders(&runtime, &log, appenders, per_appender);
            entries += appenders as u64 * per_appender;
            (appenders as u64 * per_appender, elapsed)
        });
        let syncs = log.sync_count() - syncs_before;
        log.close();

        println!(
            "{:<10} {:>12.0} {:>12} {:>14.1} {:>7.0}%",
            appenders,
            rate,
            syncs,
            entries as f64 / syncs.max(1) as f64,
            100.0 * rate / bare_rate,
        );
    }
    println!("bare write+fdatasync: {bare_rate:.0} lines/s");
}
