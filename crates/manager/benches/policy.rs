//! The policy check with 1,000 policies loaded, as the manager does it on every request.
//!
//! Run with `cargo bench -p keyward-manager`. Each authenticated request looks up the token's
//! policy names among the loaded policies, merges them into a [`PolicySet`] and checks one
//! capability on one API path. The benches split that cost:
//!
//! - `merge_and_check/N`: the whole step for a token holding N of the 1,000 policies: 4 (the
//!   usual case), 64 (the most a token may carry through the API) and 1,000 (a token written
//!   with every policy, the worst case).
//! - `check/N`: the capability check alone on an already merged set.
//! - `check_denied/N`: a path no rule matches, so every rule is tried and none wins.
//!
//! Each generated policy has three rules, one of each pattern kind: a prefix glob, a `+`
//! segment, and an exact path. After the groups it prints the median nanoseconds of each
//! case side by side.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use keyward_manager::policy::{Capability, Policy, PolicySet};
use keyward_manager::{DEFAULT_POLICY, DEFAULT_POLICY_TEXT};

const LOADED: usize = 1_000;
const HELD: [usize; 3] = [4, 64, LOADED];
const TEAMS: usize = 20;

/// The loaded policies by name, as the manager keeps them.
type Loaded = HashMap<String, Arc<Policy>>;

fn policy_name(index: usize) -> String {
    format!("app-{index}")
}

fn policy_text(index: usize) -> String {
    let team = index % TEAMS;
    format!(
        r#"
path "secret/data/team-{team}/app-{index}/*" {{ capabilities = ["read", "list"] }}
path "secret/data/team-{team}/+/shared-{index}" {{ capabilities = ["read"] }}
path "secret/metadata/team-{team}/app-{index}/config" {{ capabilities = ["read", "update"] }}
"#
    )
}

fn load_policies() -> Loaded {
    let mut loaded: Loaded = (0..LOADED)
        .map(|index| {
            let policy = Policy::parse(&policy_text(index)).expect("generated policy parses");
            (policy_name(index), Arc::new(policy))
        })
        .collect();
    let default = Policy::parse(DEFAULT_POLICY_TEXT).expect("default policy parses");
    loaded.insert(DEFAULT_POLICY.to_owned(), Arc::new(default));
    loaded
}

/// Returns the policy names of a token holding `held_count` app policies: those spread over the
/// 1,000, always including `app-17`, whose path the benches read, plus `default`.
fn held_names(held_count: usize) -> Vec<String> {
    let step = LOADED / held_count;
    let mut names: Vec<String> = (0..held_count)
        .map(|i| policy_name((17 + i * step) % LOADED))
        .collect();
    names.push(DEFAULT_POLICY.to_owned());
    names
}

fn merge(loaded: &Loaded, names: &[String]) -> PolicySet {
    PolicySet::merge(names, |name| loaded.get(name).map(|policy| policy.as_ref()))
}

const GRANTED_PATH: &str = "secret/data/team-17/app-17/db";
const DENIED_PATH: &str = "secret/data/team-17/other/db";

fn merge_and_check(loaded: &Loaded, names: &[String]) -> bool {
    merge(loaded, names).allows_any(black_box(GRANTED_PATH), &[Capability::Read])
}

fn policy_check(c: &mut Criterion) {
    let loaded = load_policies();

    let mut group = c.benchmark_group("merge_and_check");
    for held_count in HELD {
        let names = held_names(held_count);
        assert!(
            merge_and_check(&loaded, &names),
            "the token must be granted {GRANTED_PATH}"
        );
        group.bench_with_input(
            BenchmarkId::from_parameter(held_count),
            &names,
            |b, names| {
                b.iter(|| merge_and_check(&loaded, black_box(names)));
            },
        );
    }
    group.finish();

    let mut group = c.benchmark_group("check");
    for held_count in HELD {
        let set = merge(&loaded, &held_names(held_count));
        group.bench_with_input(BenchmarkId::from_parameter(held_count), &set, |b, set| {
            b.iter(|| set.allows_any(black_box(GRANTED_PATH), &[Capability::Read]));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("check_denied");
    for held_count in HELD {
        let set = merge(&loaded, &held_names(held_count));
        assert!(!set.allows_any(DENIED_PATH, &[Capability::Read]));
        group.bench_with_input(BenchmarkId::from_parameter(held_count), &set, |b, set| {
            b.iter(|| set.allows_any(black_box(DENIED_PATH), &[Capability::Read]));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = policy_check
}

/// Runs the criterion groups, then prints one table with the merge, the check and the denied
/// check for each number of held policies, measured in the same run.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_cost_table();
}

/// Median nanoseconds per call of `op`, over 7 rounds of `iterations` calls.
fn median_ns(iterations: u32, mut op: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                op();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

fn print_cost_table() {
    let loaded = load_policies();

    println!();
    println!(
        "Policy check with {LOADED} policies loaded (median ns/op; share = check / (merge + check))"
    );
    println!(
        "{:<8} {:>14} {:>12} {:>14} {:>8}",
        "held", "merge+check", "check", "denied check", "share"
    );
    for held_count in HELD {
        let names = held_names(held_count);
        let set = merge(&loaded, &names);
        let iterations = if held_count >= LOADED { 200 } else { 20_000 };

        let merged = median_ns(iterations, || {
            black_box(merge_and_check(&loaded, black_box(&names)));
        });
        let checked = median_ns(iterations, || {
            black_box(set.allows_any(black_box(GRANTED_PATH), &[Capability::Read]));
        });
        let denied = median_ns(iterations, || {
            black_box(set.allows_any(black_box(DENIED_PATH), &[Capability::Read]));
        });

        println!(
            "{:<8} {:>14.0} {:>12.0} {:>14.0} {:>7.0}%",
            held_count,
            merged,
            checked,
            denied,
            100.0 * checked / merged,
        );
    }
}
