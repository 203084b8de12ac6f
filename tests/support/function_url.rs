//! A stand-in for the front of an AWS function URL, between clients and cargo-lambda's emulator:
//! it serves the function at a bare host (the emulator serves it under `/lambda-url/<name>/`, and
//! dockerd needs a bare host), and it joins repeated request headers with commas, as function URLs
//! do in their event payload. The emulator keeps only the first of repeated headers, which would
//! turn the six `Accept` lines of skopeo and dockerd into one. Bodies stream both ways.

use http_body_util::BodyExt;

/// Serves on 127.0.0.1 (a port of its own) in a thread of its own; returns the port.
pub fn start(emulator_port: u16) -> u16 {
    let (listener, addr) = super::http_front::bind();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    super::http_front::serve(listener, move |request| {
        let client = client.clone();
        async move { forward(&client, emulator_port, request).await }
    });
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

async fn forward(
    client: &reqwest::Client,
    emulator_port: u16,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<reqwest::Body>, std::convert::Infallible> {
    let (head, body) = request.into_parts();
    // Dot segments are resolved here, as an HTTP front does, so that `..` cannot climb out of
    // the emulator's `/lambda-url/_` prefix.
    let path = remove_dot_segments(head.uri.path());
    let query = head
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("http://127.0.0.1:{emulator_port}/lambda-url/_{path}{query}");
    let mut outgoing = client.request(head.method.clone(), url);
    for name in head.headers.keys() {
        let joined: Vec<&str> = head
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        outgoing = outgoing.header(name, joined.join(", "));
    }
    outgoing = outgoing.header("x-forwarded-proto", "http");
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let response = match outgoing.body(body).send().await {
        Ok(response) => http::Response::from(response),
        Err(e) => {
            let mut response = http::Response::new(reqwest::Body::from(format!("front: {e}")));
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            response
        }
    };
    Ok(response)
}

/// RFC 3986 section 5.2.4, on the raw (still percent-encoded) path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
        if i == segments.len() - 1 && matches!(*segment, "." | "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}
