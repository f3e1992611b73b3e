//! The token request ignores `*_PROXY`: with every proxy variable pointing at a
//! dead port, a fetch still reaches the token server directly.
//!
//! Alone in its own test binary because it changes the process environment.
#![allow(unsafe_code)]

use std::time::Duration;

use ambient_protocol::exchanger::{ExchangerConfig, TokenExchanger};
use ambient_protocol::keys::PrivateKey;

#[test]
fn dead_proxy_in_env_does_not_break_a_fetch() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let dead_url = format!(
        "http://{}",
        dead.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    drop(dead);
    // SAFETY: no other thread exists yet in this test binary (one test, runtime built below).
    unsafe {
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            std::env::set_var(var, &dead_url);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let key = PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let app = axum::Router::new().route(
            "/token",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"token": "direct"})) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut cfg = ExchangerConfig::new(
            format!("http://{addr}/token"),
            key.public_key().clone(),
            "session-proxy-1",
        );
        cfg.retry_waits = vec![Duration::from_millis(10)];
        let ex = TokenExchanger::new(cfg).unwrap_or_else(|e| panic!("{e}"));
        let token = ex
            .token()
            .await
            .unwrap_or_else(|e| panic!("fetch went through the proxy: {e}"));
        assert_eq!(token.expose(), "direct");
    });
}
