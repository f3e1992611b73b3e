//! The informer's list walks every page of the real devserver.

mod support;

use std::sync::Arc;

use ambient_control_plane::api::Api;
use ambient_control_plane::informer::list_all;
use ambient_protocol::Secret;
use ambient_protocol::v1::Session;
use ambient_token_server::StaticToken;
use support::fake_api::FakeApi;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn list_walks_every_page_once() {
    let dev = DevServer::start();
    let mut want = Vec::new();
    for i in 0..7 {
        want.push(dev.new_session("proj-p", &format!("s{i}")).await);
    }
    let provider = Arc::new(StaticToken::new(Secret::new(TOKEN)));
    let api = Api::new(&dev.grpc(), false, None, provider).unwrap_or_else(|e| panic!("{e}"));
    for page_size in [1, 3, 7, 500] {
        let items: Vec<Session> = list_all(&api, page_size)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got: Vec<String> = items
            .iter()
            .filter_map(|s| s.metadata.as_ref().map(|m| m.id.clone()))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "page size {page_size}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_total_from_the_server_reserves_nothing_huge() {
    let api_server = FakeApi::start().await;
    api_server.add_project("p");
    let id = |s: &Session| {
        s.metadata
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default()
    };
    let want: Vec<String> = (0..3)
        .map(|i| id(&api_server.add_session(&format!("s{i}"), "p", "Pending")))
        .collect();
    // A server that claims two billion sessions: the list must neither
    // abort on a reservation that size nor lose the sessions it has.
    api_server.set_sessions_total(i32::MAX);
    let provider = Arc::new(StaticToken::new(Secret::new(TOKEN)));
    let api = Api::new(&api_server.grpc(), false, None, provider).unwrap_or_else(|e| panic!("{e}"));
    let items: Vec<Session> = list_all(&api, 500).await.unwrap_or_else(|e| panic!("{e}"));
    let mut got: Vec<String> = items.iter().map(id).collect();
    got.sort();
    assert_eq!(got, want);
}
