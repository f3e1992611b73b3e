//! The token server under abuse, deterministically: the key operations are
//! held busy by plugging the runtime's only blocking thread (decryptions run
//! there), so that requests really wait for a private-key slot while the
//! test abandons them, fills the queue, or watches `/readyz`. Clients are
//! raw sockets bound to many loopback addresses (127.0.0.x).

mod common;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::exchange::encrypt_v2;
use ambient_token_server::{
    BoxFuture, Config, DirectoryError, RunningServer, SessionDirectory, SessionRecord, TokenServer,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// A runtime whose blocking pool has one thread, which [`plug`] can occupy.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// Occupies the only blocking thread until the returned sender is dropped
/// or sent to: decryptions handed to the pool wait behind it.
async fn plug() -> std::sync::mpsc::Sender<()> {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = ready_tx.send(());
        let _ = released.recv();
    });
    ready_rx
        .await
        .unwrap_or_else(|_| panic!("blocking thread never started"));
    release
}

/// Waits (up to 60 s) until `cond` holds; panics naming `what`.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn loopback(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A TCP connection to `addr` from `from`.
async fn connect(addr: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

fn token_request(bearer: &str) -> String {
    format!("GET /token HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {bearer}\r\n\r\n")
}

/// Reads a response head; its status, or `None` if the server closed the
/// connection first (bounded by 60 s so a bug cannot hang the suite).
async fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("no answer and no close within 60 s"));
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

/// One request on a fresh connection from `from`: its status, or `None`
/// when the connection was refused or closed.
async fn request(addr: SocketAddr, from: IpAddr, raw: &str) -> Option<u16> {
    let mut stream = connect(addr, from).await.ok()?;
    stream.write_all(raw.as_bytes()).await.ok()?;
    read_status(&mut stream).await
}

fn valid(n: u8) -> String {
    let _ = n;
    encrypt_v2(keys().0.public_key(), LIVE, SystemTime::now())
        .unwrap_or_else(|e| panic!("encrypt: {e}"))
}

/// A bearer of the right length that decrypts to nothing: it costs a key
/// operation, so it queues.
fn garbage() -> String {
    STANDARD.encode(vec![0xa5u8; keys().0.ciphertext_len()])
}

async fn start_with(
    config: Config,
    dir: Arc<dyn SessionDirectory>,
) -> (TokenServer, RunningServer) {
    start(key_set(&[&keys().0]), dir, platform(), config).await
}

async fn metrics_text(addr: SocketAddr) -> String {
    let mut stream = connect(addr, loopback(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_string(&mut out)).await;
    out
}

fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

#[test]
fn abandoned_requests_leave_no_trace() {
    block_on(async {
        let (server, running) = start_with(
            Config {
                max_key_ops: 1,
                max_key_queue: 32,
                request_timeout: Duration::from_millis(800),
                ..config()
            },
            directory(),
        )
        .await;
        let addr = running.local_addr();
        let release = plug().await;
        // A few hundred requests from 250 addresses while no key operation
        // can finish: the queue fills; half the clients hang up while they
        // wait, the others wait for the request timeout (or are shed).
        let garbage = garbage();
        let mut clients = Vec::new();
        for i in 0..300u16 {
            let from = loopback(2 + (i % 250) as u8);
            let raw = token_request(&garbage);
            clients.push(tokio::spawn(async move {
                let mut stream = connect(addr, from).await.ok()?;
                stream.write_all(raw.as_bytes()).await.ok()?;
                if i % 2 == 0 {
                    tokio::time::sleep(Duration::from_millis(u64::from(i % 7) * 20)).await;
                    drop(stream);
                    None
                } else {
                    read_status(&mut stream).await
                }
            }));
        }
        let mut answers = std::collections::BTreeMap::<Option<u16>, usize>::new();
        for c in clients {
            let status = c.await.unwrap_or_else(|e| panic!("client: {e}"));
            *answers.entry(status).or_default() += 1;
        }
        // While plugged nothing can be decrypted: every waiting client got
        // 503 (shed, or timed out) — or hung up.
        assert_eq!(
            answers.keys().copied().collect::<Vec<_>>(),
            vec![None, Some(503)],
            "{answers:?}"
        );
        wait_for("the key queue to drain", || {
            server.metrics().key_queue() == 0
        })
        .await;
        drop(release);
        // Valid exchanges get their token again, from anywhere.
        for n in [2u8, 100, 251] {
            let status = request(addr, loopback(n), &token_request(&valid(n))).await;
            assert_eq!(status, Some(200), "valid exchange from 127.0.0.{n}");
        }
        let metrics = metrics_text(addr).await;
        assert!(
            metrics.contains("ambient_token_server_key_queue 0\n"),
            "{metrics}"
        );
        assert_eq!(server.key_ops_in_use(), 0);
        running.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    });
}

#[test]
fn a_full_key_queue_sheds_with_503_and_readyz_says_saturated() {
    block_on(async {
        let (server, running) = start_with(
            Config {
                max_key_ops: 1,
                max_key_queue: 1,
                ..config()
            },
            directory(),
        )
        .await;
        let addr = running.local_addr();
        let readyz = || request(addr, loopback(9), "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(readyz().await, Some(200));
        let release = plug().await;
        // A takes the only key operation (and waits for the plugged pool).
        let raw_a = token_request(&valid(1));
        let a = tokio::spawn(async move { request(addr, loopback(2), &raw_a).await });
        wait_for("A to hold the key operation", || {
            server.key_ops_in_use() == 1
        })
        .await;
        // B waits in the one-place queue.
        let raw_b = token_request(&valid(2));
        let b = tokio::spawn(async move { request(addr, loopback(3), &raw_b).await });
        wait_for("B to wait in the queue", || {
            server.metrics().key_queue() == 1
        })
        .await;
        assert_eq!(readyz().await, Some(503));
        // C finds the queue full.
        let c = request(addr, loopback(4), &token_request(&valid(3))).await;
        assert_eq!(c, Some(503));
        drop(release);
        assert_eq!(a.await.ok().flatten(), Some(200));
        assert_eq!(b.await.ok().flatten(), Some(200));
        assert_eq!(readyz().await, Some(200));
        running.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    });
}

#[test]
fn one_address_cannot_hold_every_connection() {
    block_on(async {
        let (server, running) = start_with(
            Config {
                max_connections: 48,
                max_connections_per_ip: 32,
                header_read_timeout: Duration::from_secs(120),
                ..config()
            },
            directory(),
        )
        .await;
        let addr = running.local_addr();
        // 127.0.0.2 opens as many idle connections as the global cap allows.
        let mut idle = Vec::new();
        for _ in 0..48 {
            idle.push(
                connect(addr, loopback(2))
                    .await
                    .unwrap_or_else(|e| panic!("connect: {e}")),
            );
        }
        // Another address still gets its token (accepted after those 48).
        let other = request(addr, loopback(3), &token_request(&valid(1))).await;
        assert_eq!(other, Some(200));
        // Exactly the per-IP cap of them is being served; the rest were closed.
        let mut served = 0;
        for stream in &mut idle {
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .is_ok()
                && read_status(stream).await == Some(200)
            {
                served += 1;
            }
        }
        assert_eq!(served, 32);
        assert_eq!(server.metrics().connections_refused("per_ip"), 16);
        assert_eq!(server.metrics().connections_refused("global"), 0);
        drop(idle);
        running.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    });
}

#[test]
fn the_global_connection_cap_closes_further_connections() {
    block_on(async {
        let (server, running) = start_with(
            Config {
                max_connections: 2,
                header_read_timeout: Duration::from_secs(120),
                ..config()
            },
            directory(),
        )
        .await;
        let addr = running.local_addr();
        let first = connect(addr, loopback(2))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _second = connect(addr, loopback(3))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            request(addr, loopback(4), &token_request(&valid(1))).await,
            None
        );
        assert!(server.metrics().connections_refused("global") >= 1);
        // A slot comes back when a connection ends.
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match request(addr, loopback(4), &token_request(&valid(1))).await {
                Some(200) => break,
                other => {
                    assert!(Instant::now() < deadline, "slot never came back: {other:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        running.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    });
}

#[test]
fn a_slow_head_is_cut_by_the_header_read_timeout() {
    block_on(async {
        let (_, running) = start_with(
            Config {
                header_read_timeout: Duration::from_millis(300),
                ..config()
            },
            directory(),
        )
        .await;
        let mut stream = connect(running.local_addr(), loopback(2))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stream
            .write_all(b"GET /token HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Never finished: the server closes the connection (possibly after a
        // 408) instead of waiting for ever.
        let status = read_status(&mut stream).await;
        assert!(matches!(status, None | Some(408)), "{status:?}");
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "connection still open");
    });
}

/// A directory that never answers.
struct Silent;

impl SessionDirectory for Silent {
    fn lookup<'a>(
        &'a self,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>> {
        Box::pin(std::future::pending())
    }
}

#[test]
fn a_request_over_its_time_is_503() {
    block_on(async {
        let (server, running) = start_with(
            Config {
                request_timeout: Duration::from_millis(300),
                ..config()
            },
            Arc::new(Silent),
        )
        .await;
        let status = request(running.local_addr(), loopback(2), &token_request(&valid(1))).await;
        assert_eq!(status, Some(503));
        assert_eq!(server.metrics().key_queue(), 0);
    });
}

#[test]
fn a_full_nonce_memory_fails_closed_with_503() {
    block_on(async {
        let (_, running) = start_with(
            Config {
                nonce_capacity: 2,
                ..config()
            },
            directory(),
        )
        .await;
        let addr = running.local_addr();
        for want in [200, 200, 503] {
            let status = request(addr, loopback(2), &token_request(&valid(0))).await;
            assert_eq!(status, Some(want));
        }
    });
}

#[test]
fn the_v2_window_is_exactly_60_s_each_way() {
    block_on(async {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let server = TokenServer::with_clock(
            key_set(&[&keys().0]),
            directory(),
            platform(),
            config(),
            Arc::new(move || now),
        );
        let running = server
            .bind(SocketAddr::new(loopback(1), 0))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = running.local_addr();
        let pk = keys().0.public_key();
        for (offset, want) in [(-61i64, 401), (-60, 200), (0, 200), (60, 200), (61, 401)] {
            let at = if offset < 0 {
                now - Duration::from_secs(offset.unsigned_abs())
            } else {
                now + Duration::from_secs(offset.unsigned_abs())
            };
            let bearer = encrypt_v2(pk, LIVE, at).unwrap_or_else(|e| panic!("{e}"));
            let status = request(addr, loopback(2), &token_request(&bearer)).await;
            assert_eq!(status, Some(want), "iat = now{offset:+}");
        }
    });
}

#[test]
fn the_method_is_checked_before_the_rate_limit() {
    block_on(async {
        let (_, running) = start_with(
            Config {
                rate_limit: ambient_token_server::RateLimit {
                    per_second: 0.001,
                    burst: 1,
                    max_clients: 16,
                },
                ..config()
            },
            directory(),
        )
        .await;
        let addr = running.local_addr();
        let get = token_request(&valid(0));
        let post = get.replacen("GET", "POST", 1);
        assert_eq!(request(addr, loopback(2), &get).await, Some(200));
        // The bucket is empty now: a GET is limited, a POST is still 405.
        assert_eq!(request(addr, loopback(2), &get).await, Some(429));
        assert_eq!(request(addr, loopback(2), &post).await, Some(405));
    });
}

#[test]
fn two_authorization_headers_are_refused() {
    block_on(async {
        let (_, running) = start_with(config(), directory()).await;
        let addr = running.local_addr();
        let (a, b) = (valid(0), valid(1));
        for second in [b.as_str(), "garbage"] {
            let raw = format!(
                "GET /token HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {a}\r\nAuthorization: Bearer {second}\r\n\r\n"
            );
            assert_eq!(request(addr, loopback(2), &raw).await, Some(401));
        }
        // Each of them alone is fine.
        assert_eq!(
            request(addr, loopback(2), &token_request(&b)).await,
            Some(200)
        );
    });
}
