//! Fuzzes the policy parser with HCL and JSON text: every input must yield a policy or an
//! error, never a panic, and evaluating an accepted policy must not panic either.

#![no_main]

use keyward_manager::policy::{Capability, Policy, PolicySet};
use libfuzzer_sys::fuzz_target;

/// Paths to evaluate every accepted policy against, beside the input's own lines.
const PATHS: [&str; 5] = [
    "secret/data/app/db",
    "secret/metadata/",
    "sys/policies/acl/x",
    "",
    "secret/data/a/b/c/d/e/f",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };

    let names = vec!["fuzz".to_owned()];
    let set = PolicySet::merge(&names, |_| Some(&policy));
    assert!(!set.is_root(), "a parsed policy made the set root");

    for path in PATHS.iter().copied().chain(text.lines()) {
        let granted = set.capabilities(path);
        assert!(
            !granted.contains(&Capability::Deny),
            "capabilities() returned deny as a grant"
        );
        let _ = set.allows_any(path, &[Capability::Read, Capability::Update]);
        let _ = set.grants_anything_under(path);
    }
});
