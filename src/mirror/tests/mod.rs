//! The core's steps, driven with recorded upstream heads: Docker Hub's challenge, its token answer,
//! a 307 to its CDN. No network.

use super::*;

use std::collections::HashMap;

use std::time::Duration;

mod admit;
mod resource;
mod stale;
mod storage;
mod stored;
mod token_route;
mod whitelist;

const HUB_CHALLENGE: &str =
    r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#;
const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn mirror(pairs: &[(&str, &str)]) -> Mirror {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Mirror::new(Config::from_lookup(|k| map.get(k).cloned()).unwrap())
}

fn whitelisted() -> Mirror {
    mirror(&[("WHITE_LIST", "alice,bob"), ("TOKEN_SECRET", SECRET)])
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "mirror.test");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).unwrap().into_parts().0
}

fn start(m: &Mirror, head: &request::Parts, now: u64) -> Step {
    m.start(
        &Incoming {
            head,
            scheme: "http",
            body: b"",
            client: None,
        },
        at(now),
    )
}

fn upstream_head(status: u16, headers: &[(&str, &str)]) -> response::Parts {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).unwrap().into_parts().0
}

fn basic(user: &str, password: &str) -> String {
    BasicCredentials {
        user: user.into(),
        password: password.into(),
    }
    .header_value()
}

fn expect_answer(step: Step) -> (Response<Vec<u8>>, Summary) {
    match step {
        Step::Answer(r, s) => (r, s),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn expect_fetch(step: Step) -> Fetch {
    match step {
        Step::Fetch(f) => *f,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

fn expect_relay(step: Step) -> response::Parts {
    match step {
        Step::Relay(p, _) => p,
        other => panic!("expected a relay, got {other:?}"),
    }
}

fn error_code(response: &Response<Vec<u8>>) -> String {
    let value: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    value["errors"][0]["code"].as_str().unwrap().to_string()
}

/// Runs the token dance against recorded Docker Hub answers; returns the token the mirror answers.
fn token_dance(m: &Mirror, path: &str, headers: &[(&str, &str)], upstream_token: &str) -> String {
    let fetch = expect_fetch(start(m, &request(Method::GET, path, headers), 1000));
    let token_fetch = past_challenge(m, fetch);
    let body = format!(r#"{{"token":"{upstream_token}","expires_in":300}}"#);
    let (response, _) = expect_answer(m.resume(
        token_fetch.pending,
        upstream_head(200, &[]),
        Some(body.into_bytes()),
        at(1000),
    ));
    assert_eq!(response.status(), 200);
    let value: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert!(value.get("refresh_token").is_none());
    value["token"].as_str().unwrap().to_string()
}

fn with_store() -> Mirror {
    mirror(&[("CACHE", "file:///var/cache/mirror")])
}

fn expect_lookup(step: Step) -> Lookup {
    match step {
        Step::Lookup(lookup) => *lookup,
        other => panic!("expected a lookup, got {other:?}"),
    }
}

/// Fails the fetch (and its retries) with no connection; the step that follows.
fn upstream_down(m: &Mirror, step: Step) -> Step {
    let mut step = step;
    loop {
        step = match step {
            Step::Fetch(fetch) => m.fail(
                fetch.pending,
                FetchError::Connect(Unreachable::Refused),
                at(10),
            ),
            other => return other,
        }
    }
}

fn expect_recall(step: Step) -> Lookup {
    match step {
        Step::Recall(recall) => *recall,
        other => panic!("expected a recall, got {other:?}"),
    }
}

fn stored_index() -> crate::store::Stored {
    crate::store::Stored {
        length: 7,
        media_type: Some("application/vnd.oci.image.index.v1+json".into()),
    }
}

/// The mirror's request for an upstream token (after learning the challenge, the first time).
fn upstream_token_fetch(m: &Mirror, headers: &[(&str, &str)]) -> Fetch {
    let path = "/token?scope=repository:alpine:pull";
    let fetch = expect_fetch(start(m, &request(Method::GET, path, headers), 1000));
    past_challenge(m, fetch)
}

fn lambda_with_bucket() -> Mirror {
    let pairs = [("CACHE", "s3://mirror-store/fn")];
    let config = crate::platforms::lambda::config(|k| {
        pairs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    assert!(config.store_redirects);
    Mirror::new(config)
}

fn start_from(m: &Mirror, head: &request::Parts, client: &str) -> Step {
    m.start(
        &Incoming {
            head,
            scheme: "http",
            body: b"",
            client: Some(client.parse().unwrap()),
        },
        at(1000),
    )
}

/// Past the upstream's `/v2/` challenge, when the token route asks for it first (it does once
/// per registry, then keeps the realm).
fn past_challenge(m: &Mirror, fetch: Fetch) -> Fetch {
    match fetch.request.uri().path() {
        "/v2/" => expect_fetch(m.resume(
            fetch.pending,
            upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
            Some(Vec::new()),
            at(1000),
        )),
        _ => fetch,
    }
}
