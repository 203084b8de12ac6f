//! A small HTTP/1.1 server on 127.0.0.1, in a thread of its own, for the fronts the tests put
//! between the mirror and its clients or upstreams.

use hyper_util::rt::TokioIo;
use std::future::Future;

/// A listener on a free port of 127.0.0.1, and its address.
pub fn bind() -> (std::net::TcpListener, String) {
    // The fronts' HTTP clients speak rustls, which needs a process-wide provider before the
    // first client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Serves every connection on `listener` with `handler`, until the test binary exits. A handler's
/// error closes the connection without an answer.
pub fn serve<F, Fut, B, E>(listener: std::net::TcpListener, handler: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<B>, E>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    // The client's address, for handlers that need it, as a request extension.
                    let service = hyper::service::service_fn(|mut request: http::Request<_>| {
                        request.extensions_mut().insert(peer);
                        handler(request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
}

/// The body the fronts answer with.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// An answer with no body.
pub fn empty(status: u16, headers: &[(&'static str, &str)]) -> http::Response<Body> {
    use http_body_util::BodyExt;
    let mut response =
        http::Response::new(http_body_util::Empty::new().map_err(|e| match e {}).boxed());
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        response.headers_mut().insert(*k, v.parse().unwrap());
    }
    response
}

/// Sends a request on to `url` with the client's headers but `Host` (the client sets the
/// origin's own from the URL) and `body`.
pub async fn forward(
    client: &reqwest::Client,
    head: &http::request::Parts,
    url: String,
    body: bytes::Bytes,
) -> Result<reqwest::Response, std::io::Error> {
    let mut outgoing = client.request(head.method.clone(), url);
    for (name, value) in &head.headers {
        if name != "host" {
            outgoing = outgoing.header(name, value);
        }
    }
    outgoing
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)
}
