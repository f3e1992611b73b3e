//! The HTTP handlers: `/token` (wire.md §3, checks in the wire's order),
//! `/.well-known/jwks.json`, `/readyz` and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambient_protocol::exchange::{
    Protocol, Rejection, SessionClaim, TokenResponse, check_plaintext, decode_bearer, v3,
};
use ambient_protocol::exchanger::format_rfc3339;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use tracing::{debug, error, info, warn};

use crate::binding::{Addresses, Binding};
use crate::directory::SessionRecord;
use crate::identity::Identity;
use crate::limit::retry_after_secs;
use crate::metrics::Outcome;
use crate::server::Inner;

/// The body of every 401 and 403 of `/token`: the reference's, saying
/// nothing about why (the reason is logged).
pub(crate) const UNAUTHORIZED: &str = "unauthorized\n";
/// See [`UNAUTHORIZED`].
pub(crate) const FORBIDDEN: &str = "forbidden\n";

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

pub(crate) async fn readyz(State(inner): State<Arc<Inner>>) -> Response {
    // Keys are loaded by construction (a KeySet is never empty).
    if !inner.directory.is_ready() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "session directory not ready",
        );
    }
    if inner.key_queue.available_permits() == 0 {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "saturated: key operation queue full",
        );
    }
    text(StatusCode::OK, "ready")
}

pub(crate) async fn metrics(State(inner): State<Arc<Inner>>) -> Response {
    inner.sync_metrics();
    let mut resp = Response::new(Body::from(inner.metrics.encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// The JWKS of the session-token signing keys; 404 with the platform
/// identity (there is nothing to verify).
pub(crate) async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    let Some(tokens) = inner.identity.session_tokens() else {
        return text(StatusCode::NOT_FOUND, "no session tokens here");
    };
    let mut resp = Response::new(Body::from(tokens.jwks()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Why a request that got past the method check and rate limit failed.
pub(crate) enum Failure {
    Rejected(Rejection),
    /// The caller is not the session's pod (403; the reason was logged).
    NotBound,
    /// The session's pod is not there yet (403; the client retries).
    NotYet,
    /// The session belongs to no project (or the directory does not know
    /// it): a session token could not be confined to one (403).
    NoProject,
    Busy,
    DirectoryDown,
    ProviderFailed,
    Internal,
}

/// The connection's addresses, as the serving side recorded them.
fn addresses(req: &Request) -> Option<Addresses> {
    let ext = req.extensions();
    ext.get::<ConnectInfo<Addresses>>()
        .map(|c| c.0)
        .or_else(|| {
            ext.get::<ConnectInfo<SocketAddr>>().map(|c| Addresses {
                peer: c.0,
                local: SocketAddr::from(([0, 0, 0, 0], 0)),
            })
        })
}

pub(crate) async fn token(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let _in_flight = inner.metrics.in_flight();
    // Rule 1, before anything else (also before the rate limit).
    if req.method() != Method::GET {
        inner.metrics.record(Outcome::Error);
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    let addrs = addresses(&req);
    let peer: Option<IpAddr> = addrs.map(|a| a.peer.ip());
    if let Some(ip) = peer
        && let Err(wait) = inner.limiter.check(ip, Instant::now())
    {
        inner.metrics.record(Outcome::RateLimited);
        debug!(peer = %ip, "rate limited");
        return with_retry_after(
            text(StatusCode::TOO_MANY_REQUESTS, "rate limited"),
            retry_after_secs(wait),
        );
    }
    // The body is never read: only the head is looked at. A v3 proof
    // covers the path the client sent (the router is served at the root).
    let path = req.uri().path().to_owned();
    let (parts, _body) = req.into_parts();
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let addrs = addrs.unwrap_or(Addresses {
        peer: unknown,
        local: unknown,
    });
    let outcome = tokio::time::timeout(
        inner.config.request_timeout,
        exchange(&inner, &parts.headers, &path, addrs),
    )
    .await;
    let peer_text = peer.map(|p| p.to_string()).unwrap_or_default();
    match outcome {
        Ok(Ok((claim, body))) => {
            inner.metrics.record(Outcome::Ok);
            info!(
                session_id = %claim.session_id,
                protocol = %claim.protocol,
                identity = inner.identity.name(),
                peer = %peer_text,
                expires_at = body.expires_at.as_deref().unwrap_or(""),
                "token issued"
            );
            axum::Json(body).into_response()
        }
        Ok(Err(failure)) => refusal(&inner, failure, &peer_text),
        Err(_) => {
            inner.metrics.record(Outcome::Error);
            warn!(peer = %peer_text, "token request timed out");
            with_retry_after(
                text(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
                1,
            )
        }
    }
}

/// The answer to a failed `/token` request (counted in the metrics).
fn refusal(inner: &Inner, failure: Failure, peer_text: &str) -> Response {
    match failure {
        Failure::Rejected(r) => {
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let outcome = match r.status() {
                401 => Outcome::Unauthorized,
                403 => Outcome::Forbidden,
                _ => Outcome::RateLimited,
            };
            inner.metrics.record(outcome);
            info!(reason = r.reason(), status = r.status(), peer = %peer_text, "token request refused");
            match status {
                StatusCode::UNAUTHORIZED => text(status, UNAUTHORIZED),
                StatusCode::FORBIDDEN => text(status, FORBIDDEN),
                _ => with_retry_after((status, r.to_string()).into_response(), 1),
            }
        }
        Failure::NotBound => {
            inner.metrics.record(Outcome::Forbidden);
            text(StatusCode::FORBIDDEN, FORBIDDEN)
        }
        Failure::NotYet => {
            inner.metrics.record(Outcome::Forbidden);
            text(StatusCode::FORBIDDEN, FORBIDDEN)
        }
        Failure::NoProject => {
            inner.metrics.record(Outcome::Forbidden);
            text(StatusCode::FORBIDDEN, FORBIDDEN)
        }
        Failure::Busy => {
            inner.metrics.record(Outcome::RateLimited);
            warn!(peer = %peer_text, "key operations saturated, shedding a request");
            with_retry_after(text(StatusCode::SERVICE_UNAVAILABLE, "server busy"), 1)
        }
        Failure::DirectoryDown => {
            inner.metrics.record(Outcome::Error);
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "session directory unavailable",
            )
        }
        Failure::ProviderFailed => {
            inner.metrics.record(Outcome::Error);
            text(StatusCode::INTERNAL_SERVER_ERROR, "token provider failed")
        }
        Failure::Internal => {
            inner.metrics.record(Outcome::Error);
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Rules 2–7 of wire.md §3 (or the v3 proof), the caller binding, and the
/// identity.
async fn exchange(
    inner: &Arc<Inner>,
    headers: &http::HeaderMap,
    path: &str,
    addrs: Addresses,
) -> Result<(SessionClaim, TokenResponse), Failure> {
    // Rules 2–3: header form. Two Authorization headers are ambiguous
    // (which one would a proxy have checked?): refused.
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let first = auth.next().map(HeaderValue::as_bytes);
    if auth.next().is_some() {
        return Err(Failure::Rejected(Rejection::AmbiguousBearer));
    }
    // v3 proves a per-session key (two HMACs); v1/v2 decrypt a bearer.
    let (claim, proved_generation) = match first {
        Some(value) if v3::is_v3(value) => {
            let proof = crate::v3::verify(
                &inner.v3_roots(),
                value,
                path,
                (inner.clock)(),
                &inner.v3_nonces,
            )
            .map_err(Failure::Rejected)?;
            let claim = SessionClaim {
                session_id: proof.session_id,
                protocol: Protocol::V3,
            };
            (claim, Some(proof.generation))
        }
        _ if inner.config.require_v3 => return Err(Failure::Rejected(Rejection::V3Required)),
        _ => (decrypt_claim(inner, first).await?, None),
    };
    // Rule 5: a session that is not in a terminal phase.
    let record = match inner.directory.lookup(&claim.session_id).await {
        Ok(Some(record)) if record.live => record,
        Ok(_) => return Err(Failure::Rejected(Rejection::SessionNotLive)),
        Err(e) => {
            error!(error = %e, "session check failed");
            return Err(Failure::DirectoryDown);
        }
    };
    let generation = bind_caller(inner, &claim.session_id, addrs).await?;
    // A v3 key is one pod generation's: the pod it was given to must still
    // be the session's.
    if let Some(proved) = proved_generation
        && proved != generation
    {
        info!(session_id = %claim.session_id, proved = %proved, current = %generation, "v3 key of another pod generation");
        return Err(Failure::Rejected(Rejection::StaleGeneration));
    }
    // Rules 6–7: the token.
    let body = match &inner.identity {
        Identity::Platform(provider) => {
            let issued = provider.token().await.map_err(|e| {
                error!(error = %e, "token provider failed");
                Failure::ProviderFailed
            })?;
            TokenResponse {
                token: issued.token,
                expires_at: issued.expires_at.map(format_rfc3339),
            }
        }
        Identity::SessionTokens(_) => {
            session_token(inner, &claim.session_id, record, generation).await?
        }
    };
    Ok((claim, body))
}

/// Rules 3–4 of v1/v2: the bearer decrypted (a private-key operation,
/// bounded and off the reactor) and its plaintext checked.
async fn decrypt_claim(inner: &Arc<Inner>, header: Option<&[u8]>) -> Result<SessionClaim, Failure> {
    let ciphertext = decode_bearer(header).map_err(Failure::Rejected)?;
    // A ciphertext no key could decrypt costs nothing: refuse it before
    // queueing for a key operation.
    if !inner
        .keys
        .keys()
        .iter()
        .any(|k| k.ciphertext_len() == ciphertext.len())
    {
        return Err(Failure::Rejected(Rejection::Decrypt));
    }
    let (plaintext, took) = key_op(inner, move |i| i.keys.decrypt(&ciphertext)).await?;
    inner.metrics.observe_decrypt(took);
    let plaintext = plaintext.map_err(Failure::Rejected)?;
    // Rule 4 and the v2 rules.
    check_plaintext(
        plaintext.as_bytes(),
        (inner.clock)(),
        &inner.nonces,
        inner.config.require_v2,
    )
    .map_err(Failure::Rejected)
}

/// The caller must be the session's pod (or process): its generation.
async fn bind_caller(inner: &Inner, session_id: &str, addrs: Addresses) -> Result<String, Failure> {
    match inner
        .binding
        .bind(session_id, addrs.peer, addrs.local)
        .await
    {
        Ok(Binding::Bound { generation }) => Ok(generation),
        Ok(Binding::Refused { reason }) => {
            warn!(%session_id, peer = %addrs.peer, reason = %reason, "token request from a caller not bound to the session");
            Err(Failure::NotBound)
        }
        Ok(Binding::NotYet) => {
            debug!(%session_id, peer = %addrs.peer, "session's pod not ready for a token yet");
            Err(Failure::NotYet)
        }
        Err(e) => {
            error!(error = %e, "caller binding failed");
            Err(Failure::DirectoryDown)
        }
    }
}

/// The session token for a live, bound session: from the cache when it is
/// fresh enough, else signed on the blocking pool.
async fn session_token(
    inner: &Arc<Inner>,
    session_id: &str,
    record: SessionRecord,
    generation: String,
) -> Result<TokenResponse, Failure> {
    let Some(tokens) = inner.identity.session_tokens() else {
        return Err(Failure::Internal);
    };
    if record.project.is_empty() {
        warn!(%session_id, "the session has no project (or the directory does not say it): no session token");
        return Err(Failure::NoProject);
    }
    let now = (inner.clock)();
    let minted = match tokens.cached(session_id, &record.project, &generation, now) {
        Some(hit) => hit,
        None => {
            let tokens = tokens.clone();
            let sid = session_id.to_owned();
            let (minted, _took) = key_op(inner, move |_| {
                tokens.mint(&sid, &record.project, &generation, now)
            })
            .await?;
            minted.map_err(|e| {
                error!(error = %e, "minting a session token failed");
                Failure::Internal
            })?
        }
    };
    Ok(TokenResponse {
        token: minted.token,
        expires_at: Some(format_rfc3339(minted.expires_at)),
    })
}

/// Runs one private-key operation on the blocking pool, bounded by the key
/// operation slots and their queue. The place in the queue is a permit held
/// by this future: a request dropped while it waits (timeout, client gone)
/// gives it back.
async fn key_op<T: Send + 'static>(
    inner: &Arc<Inner>,
    op: impl FnOnce(&Inner) -> T + Send + 'static,
) -> Result<(T, Duration), Failure> {
    let waiting = inner.key_queue.try_acquire().map_err(|_| Failure::Busy)?;
    let gauge = inner.metrics.waiting_for_key();
    let permit = inner.key_ops.clone().acquire_owned().await;
    drop((gauge, waiting));
    let permit = permit.map_err(|_| Failure::Internal)?;
    let worker = inner.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let started = Instant::now();
        let result = op(&worker);
        (result, started.elapsed())
    })
    .await
    .map_err(|_| Failure::Internal)
}
