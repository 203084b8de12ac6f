//! `warm`'s client of the mirror, in-process: the requests an anonymous `docker pull` makes,
//! answered by the same core and driver the server runs (token dance, upstream requests, the
//! store's verification and its records), with no socket in between.

use crate::native::drive::Driver;
use crate::Summary;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;

/// The `Host` the in-process requests carry (the mirror's own token URL is on it).
pub const HOST: &str = "127.0.0.1";

/// What a manifest `Accept`s: every type the mirror stores.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest read.
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// An anonymous client of one repository, holding the token the mirror handed it.
pub struct Client<'d> {
    driver: &'d Driver,
    name: String,
    token: Option<String>,
}

/// An answer, its body read (manifests) or drained (blobs).
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub summary: Summary,
    /// A manifest's bytes; empty for a blob.
    pub body: Vec<u8>,
    /// How many bytes the body had.
    pub length: u64,
}

impl Answer {
    /// The registry's error message, for a report.
    pub fn error(&self) -> String {
        let message = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string));
        match message {
            Some(message) => format!("{}: {message}", self.status),
            None => self.status.to_string(),
        }
    }
}

impl<'d> Client<'d> {
    pub fn new(driver: &'d Driver, name: &str) -> Client<'d> {
        Client {
            driver,
            name: name.to_string(),
            token: None,
        }
    }

    /// `GET /v2/{name}/manifests/{reference}`, its body read.
    pub async fn manifest(&mut self, reference: &str) -> Result<Answer, String> {
        let path = format!("/v2/{}/manifests/{reference}", self.name);
        self.get(&path, true).await
    }

    /// `GET /v2/{name}/blobs/{digest}`, its body drained (the store keeps it as it passes).
    pub async fn blob(&mut self, digest: &str) -> Result<Answer, String> {
        let path = format!("/v2/{}/blobs/{digest}", self.name);
        self.get(&path, false).await
    }

    /// A `GET`; on a `401`, the token its challenge names, and the `GET` again.
    async fn get(&mut self, path: &str, manifest: bool) -> Result<Answer, String> {
        let answer = self.send(path, manifest).await?;
        if answer.status != StatusCode::UNAUTHORIZED || self.token.is_some() {
            return Ok(answer);
        }
        let challenge = answer
            .headers
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or("the mirror answered 401 without a challenge")?;
        self.token = Some(self.fetch_token(challenge).await?);
        self.send(path, manifest).await
    }

    async fn send(&self, path: &str, manifest: bool) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, HOST);
        if manifest {
            request = request.header(header::ACCEPT, MANIFEST_TYPES);
        }
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let (head, ()) = request.body(()).map_err(|e| e.to_string())?.into_parts();
        let (response, summary) = self.driver.handle(&head, "http", b"", None).await;
        let keep = match manifest || !response.status().is_success() {
            true => MAX_MANIFEST,
            false => 0,
        };
        read(response, summary, keep).await
    }

    /// The token the mirror's own token service hands an anonymous client for `challenge`
    /// (`Bearer realm="…/token",service="…",scope="…"`).
    async fn fetch_token(&self, challenge: &str) -> Result<String, String> {
        let params = challenge_params(challenge);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.as_str())
            .ok_or("the mirror's challenge names no realm")?;
        // The realm is the mirror's own address: only its path is asked, in-process.
        let path = realm
            .find("://")
            .and_then(|i| realm[i + 3..].find('/').map(|j| &realm[i + 3 + j..]))
            .unwrap_or(realm);
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
        {
            query.append_pair(k, v);
        }
        let uri = format!("{path}?{}", query.finish());
        let (head, ()) = Request::builder()
            .uri(uri)
            .header(header::HOST, HOST)
            .body(())
            .map_err(|e| e.to_string())?
            .into_parts();
        let (response, summary) = self.driver.handle(&head, "http", b"", None).await;
        let answer = read(response, summary, MAX_MANIFEST).await?;
        if !answer.status.is_success() {
            return Err(format!("the mirror's token service: {}", answer.error()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        value["token"]
            .as_str()
            .or(value["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| "the mirror's token service answered no token".to_string())
    }
}

/// Reads `response`'s body: up to `keep` bytes kept, the rest drained (counted).
async fn read(
    response: Response<reqwest::Body>,
    summary: Summary,
    keep: usize,
) -> Result<Answer, String> {
    let (parts, mut body) = response.into_parts();
    let (mut kept, mut length) = (Vec::new(), 0u64);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the body was cut short: {e}"))?;
        if let Ok(data) = frame.into_data() {
            length += data.len() as u64;
            if kept.len() + data.len() <= keep {
                kept.extend_from_slice(&data);
            } else if keep > 0 {
                return Err(format!("an answer larger than {keep} bytes"));
            }
        }
    }
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        summary,
        body: kept,
        length,
    })
}

/// The `key="value"` parameters of a `Bearer` challenge.
fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let rest = challenge
        .trim()
        .strip_prefix("Bearer")
        .unwrap_or(challenge)
        .trim();
    let mut params = Vec::new();
    let mut rest = rest;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, next)) => (value, next),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.push((key, value.to_string()));
        rest = next;
    }
    params
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_challenge_gives_its_parameters() {
        let params = super::challenge_params(
            r#"Bearer realm="http://127.0.0.1/token",service="registry-mirror",scope="repository:library/alpine:pull""#,
        );
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("realm"), Some("http://127.0.0.1/token"));
        assert_eq!(get("service"), Some("registry-mirror"));
        assert_eq!(get("scope"), Some("repository:library/alpine:pull"));
    }
}
