//! Flood resistance: one client IP sending garbage at a high rate gets 429s
//! (with `Retry-After`) while a client from another IP still gets its tokens.
//! The server listens on 127.0.0.1; the clients bind 127.0.0.2 and 127.0.0.3.
//! Bounded in count (400 garbage requests, 8 at a time) and time.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::encrypt_v2;
use ambient_token_server::{Config, Outcome, RateLimit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;

fn client_from(ip: &str) -> reqwest::Client {
    let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{e}"));
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_ip_is_limited_and_others_keep_their_tokens() {
    const FLOOD: usize = 400;
    const GOOD: usize = 5;
    let (current, _) = keys();
    let (server, running) = start(
        key_set(&[current]),
        directory(),
        platform(),
        Config {
            rate_limit: RateLimit {
                per_second: 5.0,
                burst: 10,
                max_clients: 1000,
            },
            ..config()
        },
    )
    .await;
    let url = format!("http://{}/token", running.local_addr());

    // Garbage that has the right length, so that it would cost a decryption.
    let garbage = format!("Bearer {}", STANDARD.encode(vec![0xa5u8; 512]));
    let limited = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    for _ in 0..8 {
        let client = client_from("127.0.0.2");
        let (url, garbage, limited, next) =
            (url.clone(), garbage.clone(), limited.clone(), next.clone());
        flooders.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < FLOOD {
                let resp = client
                    .get(&url)
                    .header("authorization", &garbage)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("flood request: {e}"));
                match resp.status().as_u16() {
                    429 => {
                        let retry = resp
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok());
                        assert!(retry.is_some_and(|s| s >= 1), "429 without Retry-After");
                        limited.fetch_add(1, Ordering::SeqCst);
                    }
                    401 => {}
                    other => panic!("garbage got {other}"),
                }
            }
        }));
    }

    // Meanwhile, a well-behaved client from another address.
    let good = client_from("127.0.0.3");
    let pk = current.public_key();
    for i in 0..GOOD {
        let bearer = encrypt_v2(pk, LIVE, SystemTime::now()).unwrap_or_else(|e| panic!("{e}"));
        let resp = good
            .get(&url)
            .header("authorization", format!("Bearer {bearer}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("good request {i}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "good request {i}");
        let body = resp.text().await.unwrap_or_default();
        assert!(body.contains(API_TOKEN));
    }
    for f in flooders {
        f.await.unwrap_or_else(|e| panic!("flooder: {e}"));
    }

    let limited = limited.load(Ordering::SeqCst);
    assert!(
        limited >= FLOOD / 2,
        "only {limited} of {FLOOD} garbage requests were rate limited"
    );
    assert_eq!(server.metrics().count(Outcome::RateLimited), limited as u64);
    assert_eq!(server.metrics().count(Outcome::Ok), GOOD as u64);
    assert_eq!(
        server.metrics().count(Outcome::Unauthorized),
        (FLOOD - limited) as u64
    );
}
