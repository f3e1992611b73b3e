//! `--push REGISTRY/NS`: uploads an image over the OCI distribution API —
//! blobs the registry lacks (monolithic POST-then-PUT upload), then the
//! manifest under the tag. Registry token auth (`WWW-Authenticate: Bearer`)
//! and basic auth are answered with `REGISTRY_USERNAME`/`REGISTRY_PASSWORD`
//! when set, anonymously otherwise. `https://` unless the registry is given
//! with an explicit `http://` (a local test registry).

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};

use super::oci::{Blob, Image};

/// Pushes `image` as `<registry>/<name>:<tag>`; returns `<ref>@<digest>`.
pub fn push(image: &Image, registry: &str, name: &str, tag: &str) -> Result<String> {
    let (base, repo) = target(registry, name)?;
    let mut session = Session {
        client: Client::builder().build()?,
        base,
        repo,
        auth: None,
    };
    for blob in image.layers.iter().chain([&image.config]) {
        session.push_blob(blob)?;
    }
    let url = format!("{}/v2/{}/manifests/{tag}", session.base, session.repo);
    let m = &image.manifest;
    let res = session.send(|c| {
        c.put(&url)
            .header(CONTENT_TYPE, &m.media_type)
            .body(m.bytes.clone())
    })?;
    expect(res, StatusCode::CREATED, "manifest upload")?;
    let host = session
        .base
        .split_once("://")
        .map_or(session.base.as_str(), |(_, h)| h);
    Ok(format!("{host}/{}:{tag}@{}", session.repo, m.digest))
}

/// Splits `[scheme://]host[/namespace]` into the API base URL and repository.
fn target(registry: &str, name: &str) -> Result<(String, String)> {
    let (scheme, rest) = match registry.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest),
        Some((s, _)) => bail!("--push: unsupported scheme {s:?}"),
        None => ("https", registry),
    };
    let rest = rest.trim_end_matches('/');
    let (host, ns) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        bail!("--push needs REGISTRY[/NAMESPACE], got {registry:?}");
    }
    let repo = if ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}/{name}")
    };
    Ok((format!("{scheme}://{host}"), repo))
}

struct Session {
    client: Client,
    base: String,
    repo: String,
    auth: Option<String>,
}

impl Session {
    /// Sends the request, authenticating once if the registry asks to.
    fn send(&mut self, make: impl Fn(&Client) -> RequestBuilder) -> Result<Response> {
        let with_auth = |s: &Self| {
            let req = make(&s.client);
            match &s.auth {
                Some(a) => req.header(AUTHORIZATION, a),
                None => req,
            }
        };
        let res = with_auth(self).send()?;
        if res.status() != StatusCode::UNAUTHORIZED || self.auth.is_some() {
            return Ok(res);
        }
        let challenge = res
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.auth = Some(self.authenticate(&challenge)?);
        Ok(with_auth(self).send()?)
    }

    fn authenticate(&self, challenge: &str) -> Result<String> {
        let user = std::env::var("REGISTRY_USERNAME").ok();
        let password = std::env::var("REGISTRY_PASSWORD").ok();
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (Some(u), Some(p)) = (user, password) else {
                bail!("the registry wants basic auth: set REGISTRY_USERNAME and REGISTRY_PASSWORD");
            };
            let req = self.client.get(&self.base).basic_auth(u, Some(p)).build()?;
            return req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
                .context("building basic auth");
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            bail!("the registry refused us without a usable challenge ({challenge:?})");
        }
        let param = |key: &str| {
            params.split(',').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_owned())
            })
        };
        let realm = param("realm").context("bearer challenge without realm")?;
        let mut query = vec![("scope", format!("repository:{}:pull,push", self.repo))];
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        let url = reqwest::Url::parse_with_params(&realm, &query)
            .with_context(|| format!("bad token realm {realm:?}"))?;
        let mut req = self.client.get(url);
        if let (Some(u), Some(p)) = (user, password) {
            req = req.basic_auth(u, Some(p));
        }
        let res = req.send().context("asking the registry's token service")?;
        let res = expect(res, StatusCode::OK, "registry token")?;
        let body: serde_json::Value = res.json()?;
        let token = body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .context("the token service answered no token")?;
        Ok(format!("Bearer {token}"))
    }

    fn push_blob(&mut self, blob: &Blob) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repo, blob.digest);
        if self.send(|c| c.head(&url))?.status() == StatusCode::OK {
            return Ok(());
        }
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.repo);
        let res = expect(
            self.send(|c| c.post(&start))?,
            StatusCode::ACCEPTED,
            "starting a blob upload",
        )?;
        let location = res
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("blob upload without Location")?;
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", blob.digest);
        let res = self.send(|c| {
            c.put(&put)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(blob.bytes.clone())
        })?;
        expect(res, StatusCode::CREATED, "blob upload")?;
        Ok(())
    }
}

fn expect(res: Response, want: StatusCode, what: &str) -> Result<Response> {
    if res.status() == want {
        return Ok(res);
    }
    let status = res.status();
    let body = res.text().unwrap_or_default();
    bail!(
        "{what}: the registry answered {status}: {}",
        body.chars().take(300).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn registry_argument_splits_into_base_and_repository() -> anyhow::Result<()> {
        assert_eq!(
            target("quay.io/ambient", "ambient-mcp")?,
            ("https://quay.io".into(), "ambient/ambient-mcp".into())
        );
        assert_eq!(
            target("http://127.0.0.1:5000", "d")?,
            ("http://127.0.0.1:5000".into(), "d".into())
        );
        assert!(target("ftp://x/y", "d").is_err());
        assert!(target("/ns", "d").is_err());
        Ok(())
    }
}
