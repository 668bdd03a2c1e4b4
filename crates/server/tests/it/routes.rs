//! Route behaviour that the OpenBao comparison does not cover: token sources, lockout, HEAD,
//! the mount listing and shutdown.

use serde_json::json;

use crate::harness::TestServer;

#[tokio::test]
async fn bearer_token_authenticates() {
    let server = TestServer::start().await;

    let response = server
        .client()
        .get(server.url("auth/token/lookup-self"))
        .bearer_auth(&server.root_token)
        .send()
        .await
        .expect("request completes");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(body["data"]["policies"], json!(["root"]));
}

#[tokio::test]
async fn repeated_bad_tokens_lock_out_address() {
    let server = TestServer::start_with(|config| {
        config.per_address_rate = None;
        config.per_token_rate = None;
    })
    .await;

    let mut statuses = Vec::new();
    for attempt in 0..25 {
        let token = format!("kwt.guess-{attempt}");
        let (status, _) = server
            .call_as(&token, "GET", "secret/data/app/x", None)
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses[0], 403);
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    let (status, body) = server.call("GET", "secret/data/app/x", None).await;
    assert_eq!(status, 429, "a locked-out address authenticated: {body}");
}

#[tokio::test]
async fn health_head_has_status_only() {
    let server = TestServer::start().await;

    let response = server
        .client()
        .head(server.url("sys/health"))
        .send()
        .await
        .expect("request completes");
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("body reads");
    assert!(body.is_empty());
}

#[tokio::test]
async fn mount_listing_shows_secret_mount() {
    let server = TestServer::start().await;

    let (status, body) = server.call("GET", "sys/internal/ui/mounts", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["secret"]["secret/"]["type"], "kv");
    assert_eq!(body["data"]["secret"]["secret/"]["options"]["version"], "2");
}

#[tokio::test]
async fn list_works_with_get_and_list_method() {
    let server = TestServer::start().await;
    for name in ["a/one", "a/two", "b"] {
        let (status, _) = server
            .call(
                "PUT",
                &format!("secret/data/{name}"),
                Some(json!({ "data": { "k": "v" } })),
            )
            .await;
        assert_eq!(status, 200);
    }

    let (status, root) = server.call("GET", "secret/metadata/?list=true", None).await;
    assert_eq!(status, 200);
    assert_eq!(root["data"]["keys"], json!(["a/", "b"]));

    let (status, folder) = server.call("LIST", "secret/metadata/a/", None).await;
    assert_eq!(status, 200);
    assert_eq!(folder["data"]["keys"], json!(["one", "two"]));
}

#[tokio::test]
async fn secret_values_keep_their_json_types() {
    let server = TestServer::start().await;
    let data = json!({ "n": 1, "flag": true, "nested": { "x": [1, 2] }, "s": "line\nbreak" });

    server
        .call(
            "PUT",
            "secret/data/app/typed",
            Some(json!({ "data": data })),
        )
        .await;
    let (status, read) = server.call("GET", "secret/data/app/typed", None).await;
    assert_eq!(status, 200);
    assert_eq!(read["data"]["data"], data);
}

#[tokio::test]
async fn non_object_data_is_rejected() {
    let server = TestServer::start().await;

    let (status, body) = server
        .call("PUT", "secret/data/app/x", Some(json!({ "data": "plain" })))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.call("GET", "secret/data/app/x", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn shutdown_stops_accepting_connections() {
    let mut server = TestServer::start().await;
    let (status, _) = server.call("GET", "sys/health", None).await;
    assert_eq!(status, 200);

    server.stop().await;
    let result = server.client().get(server.url("sys/health")).send().await;
    assert!(result.is_err(), "server still answers after shutdown");
}
