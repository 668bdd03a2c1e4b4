//! Interoperability with the real `bao` CLI (OpenBao 2.7): each command runs against a
//! `keyward server --dev` and against an OpenBao dev server, and the two outputs must match
//! once values that change on every run are masked.
//!
//! On OpenBao each test enables its own KV v2 mount whose name is as long as `secret`, so the
//! `=` rules of bao's tables have the same width, and OpenBao's output has the mount name
//! rewritten to `secret`. Differences that Keyward has on purpose are listed as exceptions with
//! their reason.

mod pair;

use serde_json::Value;

use self::pair::{
    Both, EMPTY_PATCH_404, METADATA_VERSION_FIELD, METADATA_VERSION_ROW, PERMISSION_DENIED, Pair,
    Side,
};
use crate::compare::Exception;
use crate::harness::random_hex;

/// Writes the usual first secret on both sides.
fn put_first_secret(pair: &Pair) {
    pair.both(&["kv", "put", "secret/app/db", "user=a", "pass=b"])
        .assert_exit(0);
}

#[test]
fn kv_put_and_get_match_openbao() {
    let Some(pair) = Pair::start("kv_put_and_get_match_openbao") else {
        return;
    };

    pair.both(&["kv", "put", "secret/app/db", "user=a", "pass=b"])
        .assert_exit(0)
        .assert_same_stdout();
    let both = pair.both(&[
        "kv",
        "put",
        "-format=json",
        "secret/app/db",
        "user=a",
        "pass=c",
    ]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(keyward["data"]["version"], 2);

    pair.both(&["kv", "get", "secret/app/db"])
        .assert_exit(0)
        .assert_same_stdout();
    let both = pair.both(&["kv", "get", "-format=json", "secret/app/db"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(keyward["data"]["data"]["pass"], "c");

    let both = pair.both(&["kv", "get", "-format=json", "-version=1", "secret/app/db"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(keyward["data"]["data"]["pass"], "b");
    assert_eq!(keyward["data"]["metadata"]["version"], 1);

    let both = pair.both(&["kv", "get", "-field=pass", "secret/app/db"]);
    both.assert_exit(0).assert_same_stdout();
    assert_eq!(both.keyward.stdout, "c");
}

#[test]
fn missing_secret_reads_like_openbao() {
    let Some(pair) = Pair::start("missing_secret_reads_like_openbao") else {
        return;
    };
    put_first_secret(&pair);

    // bao exits with 2 when the server returns 404, and with 1 when a field is missing.
    for (args, code) in [
        (["kv", "get", "secret/app/missing"].as_slice(), 2),
        (&["kv", "get", "-format=json", "secret/app/missing"], 2),
        (&["kv", "get", "-version=9", "secret/app/db"], 2),
        (&["kv", "get", "-field=nothing", "secret/app/db"], 1),
    ] {
        pair.both(args)
            .assert_exit(code)
            .assert_same_stdout()
            .assert_same_stderr();
    }
}

#[test]
fn kv_patch_matches_openbao() {
    let Some(pair) = Pair::start("kv_patch_matches_openbao") else {
        return;
    };
    put_first_secret(&pair);

    pair.both(&["kv", "patch", "secret/app/db", "pass=d"])
        .assert_exit(0)
        .assert_same_stdout();
    let both = pair.both(&["kv", "patch", "-format=json", "secret/app/db", "extra=e"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(keyward["data"]["version"], 3);

    let both = pair.both(&["kv", "get", "-format=json", "secret/app/db"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(
        keyward["data"]["data"],
        serde_json::json!({ "user": "a", "pass": "d", "extra": "e" })
    );

    // Patching a secret that does not exist fails on both.
    pair.both(&["kv", "patch", "secret/app/missing", "a=b"])
        .assert_exit(2)
        .assert_same_stderr_except(&[EMPTY_PATCH_404]);
}

#[test]
fn kv_list_matches_openbao() {
    let Some(pair) = Pair::start("kv_list_matches_openbao") else {
        return;
    };
    for path in ["secret/app/db", "secret/app/api", "secret/top"] {
        pair.both(&["kv", "put", path, "k=v"]).assert_exit(0);
    }

    for folder in ["secret/", "secret/app"] {
        pair.both(&["kv", "list", folder])
            .assert_exit(0)
            .assert_same_stdout();
        let both = pair.both(&["kv", "list", "-format=json", folder]);
        both.assert_exit(0);
        both.assert_same_json(&[]);
    }
    let both = pair.both(&["kv", "list", "-format=json", "secret/"]);
    assert_eq!(both.keyward.json(), serde_json::json!(["app/", "top"]));

    pair.both(&["kv", "list", "secret/nothing"])
        .assert_exit(2)
        .assert_same_stdout()
        .assert_same_stderr();
}

#[test]
fn kv_metadata_get_matches_openbao() {
    let Some(pair) = Pair::start("kv_metadata_get_matches_openbao") else {
        return;
    };
    put_first_secret(&pair);
    pair.both(&["kv", "put", "secret/app/db", "user=a", "pass=c"])
        .assert_exit(0);

    pair.both(&["kv", "metadata", "get", "secret/app/db"])
        .assert_exit(0)
        .assert_same_stdout_except(&[METADATA_VERSION_ROW]);
    let both = pair.both(&["kv", "metadata", "get", "-format=json", "secret/app/db"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[METADATA_VERSION_FIELD]);
    assert_eq!(keyward["data"]["current_version"], 2);
    assert_eq!(
        keyward["data"]["versions"]
            .as_object()
            .map(|versions| versions.len()),
        Some(2)
    );
}

#[test]
fn kv_delete_undelete_destroy_match_openbao() {
    let Some(pair) = Pair::start("kv_delete_undelete_destroy_match_openbao") else {
        return;
    };
    for pass in ["p1", "p2", "p3"] {
        pair.both(&["kv", "put", "secret/app/db", &format!("pass={pass}")])
            .assert_exit(0);
    }

    // Deleting the current version (3) leaves its metadata readable, without data.
    pair.both(&["kv", "delete", "secret/app/db"])
        .assert_exit(0)
        .assert_same_stdout();
    pair.both(&["kv", "get", "secret/app/db"])
        .assert_same_exit()
        .assert_same_stdout()
        .assert_same_stderr();
    let both = pair.both(&["kv", "get", "-format=json", "secret/app/db"]);
    both.assert_same_exit()
        .assert_same_stdout()
        .assert_same_stderr();

    pair.both(&["kv", "undelete", "-versions=3", "secret/app/db"])
        .assert_exit(0)
        .assert_same_stdout();
    let both = pair.both(&["kv", "get", "-format=json", "secret/app/db"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(keyward["data"]["data"]["pass"], "p3");

    pair.both(&["kv", "delete", "-versions=1", "secret/app/db"])
        .assert_exit(0)
        .assert_same_stdout();
    pair.both(&["kv", "destroy", "-versions=2", "secret/app/db"])
        .assert_exit(0)
        .assert_same_stdout();

    let both = pair.both(&["kv", "metadata", "get", "-format=json", "secret/app/db"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[METADATA_VERSION_FIELD]);
    let versions = &keyward["data"]["versions"];
    assert_ne!(
        versions["1"]["deletion_time"], "",
        "version 1 is deleted: {versions}"
    );
    assert_eq!(
        versions["2"]["destroyed"], true,
        "version 2 is destroyed: {versions}"
    );
    assert_eq!(
        versions["3"]["deletion_time"], "",
        "version 3 is restored: {versions}"
    );

    for version in ["-version=1", "-version=2"] {
        pair.both(&["kv", "get", version, "secret/app/db"])
            .assert_same_exit()
            .assert_same_stdout()
            .assert_same_stderr();
        pair.both(&["kv", "get", "-format=json", version, "secret/app/db"])
            .assert_same_exit()
            .assert_same_stdout()
            .assert_same_stderr();
    }
}

#[test]
fn stale_cas_put_fails_like_openbao() {
    let Some(pair) = Pair::start("stale_cas_put_fails_like_openbao") else {
        return;
    };
    put_first_secret(&pair);
    pair.both(&["kv", "put", "secret/app/db", "user=a", "pass=c"])
        .assert_exit(0);

    pair.both(&["kv", "put", "-cas=1", "secret/app/db", "pass=stale"])
        .assert_exit(2)
        .assert_same_stdout()
        .assert_same_stderr();
    pair.both(&["kv", "put", "-cas=0", "secret/app/db", "pass=stale"])
        .assert_exit(2)
        .assert_same_stderr();

    let both = pair.both(&["kv", "get", "-format=json", "secret/app/db"]);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(
        keyward["data"]["metadata"]["version"], 2,
        "a stale write changed nothing"
    );
    assert_eq!(keyward["data"]["data"]["pass"], "c");

    let both = pair.both(&[
        "kv",
        "put",
        "-format=json",
        "-cas=2",
        "secret/app/db",
        "pass=fresh",
    ]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(keyward["data"]["version"], 3);
}

#[test]
fn policy_commands_match_openbao() {
    let Some(pair) = Pair::start("policy_commands_match_openbao") else {
        return;
    };
    let text = "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n";
    let name = format!("app-read-{}", random_hex(3));
    pair.openbao_policies.borrow_mut().push(name.clone());

    let keyward_file = pair.policy_file(Side::Keyward, &name, text);
    let openbao_file = pair.policy_file(Side::OpenBao, &name, text);
    let keyward = pair.bao(
        Side::Keyward,
        &pair.keyward.root_token,
        &["policy", "write", &name, &keyward_file],
    );
    let openbao = pair.bao(
        Side::OpenBao,
        &pair.openbao_token,
        &["policy", "write", &name, &openbao_file],
    );
    Both {
        args: format!("policy write {name} FILE"),
        keyward,
        openbao,
    }
    .assert_exit(0)
    .assert_same_stdout();

    pair.both(&["policy", "read", &name])
        .assert_exit(0)
        .assert_same_stdout();
    let both = pair.both(&["policy", "read", "-format=json", &name]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(keyward["policy"], text);

    // OpenBao's list also contains policies of other tests and runs, so compare the names
    // this test expects, and check that Keyward lists nothing else.
    let both = pair.both(&["policy", "list", "-format=json"]);
    both.assert_exit(0);
    let names = |value: Value| -> Vec<String> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("policy list is not an array: {value}"))
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let keyward = names(both.keyward.json());
    let openbao = names(both.openbao.json());
    for expected in ["default", "root", name.as_str()] {
        assert_eq!(
            keyward.iter().any(|n| n == expected),
            openbao.iter().any(|n| n == expected),
            "policy {expected:?}: Keyward lists {keyward:?}, OpenBao lists {openbao:?}"
        );
    }
    let mut expected_keyward: Vec<String> = ["default", "root", name.as_str()]
        .iter()
        .filter(|n| openbao.iter().any(|o| o == *n))
        .map(|n| (*n).to_owned())
        .collect();
    expected_keyward.sort();
    assert_eq!(keyward, expected_keyward);

    pair.both(&["policy", "read", "no-such-policy"])
        .assert_exit(2)
        .assert_same_stderr();
}

#[test]
fn token_create_and_use_match_openbao() {
    let Some(pair) = Pair::start("token_create_and_use_match_openbao") else {
        return;
    };
    put_first_secret(&pair);
    pair.both(&["kv", "put", "secret/other", "k=v"])
        .assert_exit(0);
    let policy = pair.write_policy(
        "app-read",
        "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n",
    );

    // Table form: every row but the token and its accessor must match.
    let policy_arg = format!("-policy={policy}");
    pair.both(&["token", "create", &policy_arg, "-ttl=1h"])
        .assert_exit(0)
        .assert_same_stdout();

    let both = pair.both(&["token", "create", "-format=json", &policy_arg, "-ttl=1h"]);
    both.assert_exit(0);
    let (keyward, openbao) = both.assert_same_json(&[]);
    let keyward_token = keyward["auth"]["client_token"]
        .as_str()
        .expect("Keyward returned a token")
        .to_owned();
    let openbao_token = openbao["auth"]["client_token"]
        .as_str()
        .expect("OpenBao returned a token")
        .to_owned();
    for side in [&keyward, &openbao] {
        pair.mask(
            side["auth"]["client_token"].as_str().unwrap_or_default(),
            "<token>",
        );
        pair.mask(
            side["auth"]["accessor"].as_str().unwrap_or_default(),
            "<accessor>",
        );
    }
    assert_eq!(
        keyward["auth"]["policies"],
        serde_json::json!([policy, "default"])
    );

    // The new token reads what its policy allows and nothing else, on both servers.
    pair.both_with(
        &keyward_token,
        &openbao_token,
        &["kv", "get", "secret/app/db"],
    )
    .assert_exit(0)
    .assert_same_stdout();
    pair.both_with(
        &keyward_token,
        &openbao_token,
        &["kv", "get", "secret/other"],
    )
    .assert_exit(2)
    .assert_same_stderr_except(&[PERMISSION_DENIED]);
    pair.both_with(
        &keyward_token,
        &openbao_token,
        &["kv", "put", "secret/app/db", "user=x"],
    )
    .assert_exit(2)
    .assert_same_stderr_except(&[PERMISSION_DENIED]);

    let both = pair.both_with(
        &keyward_token,
        &openbao_token,
        &["token", "lookup", "-format=json"],
    );
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[]);
    assert_eq!(
        keyward["data"]["policies"],
        serde_json::json!([policy, "default"])
    );
    pair.both_with(&keyward_token, &openbao_token, &["token", "lookup"])
        .assert_exit(0)
        .assert_same_stdout();
}

#[test]
fn root_token_lookup_matches_openbao() {
    let Some(pair) = Pair::start("root_token_lookup_matches_openbao") else {
        return;
    };

    // The two root tokens were made differently (by `keyward server --dev` and by OpenBao's
    // dev mode), so only the shape and the values both root tokens share are compared.
    let both = pair.both(&["token", "lookup", "-format=json"]);
    both.assert_exit(0);
    let (keyward, _) = both.assert_same_json(&[Exception {
        path: "data.display_name",
        reason: "OpenBao's dev mode creates its root token through the token store, which names \
                 it 'token'; Keyward names its root token 'root'",
    }]);
    assert_eq!(keyward["data"]["policies"], serde_json::json!(["root"]));
}
