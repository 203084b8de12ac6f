//! The steps that ask an adapter for I/O (a fetch, a store lookup, a fill), and the retries of a
//! fetch that met a gateway error or a broken connection.

use super::*;

// ---- Fetches and their retries ----

/// How many times the mirror sends one upstream request, at most.
const MAX_ATTEMPTS: u32 = 3;

/// The pause before attempt `n + 1`: 100 ms, then 400 ms.
pub(super) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 4u64.pow(attempt.saturating_sub(1)))
}

impl Resend {
    pub(super) fn of(request: &Request<Vec<u8>>, read_body: Option<usize>) -> Self {
        Resend {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            read_body,
        }
    }
}

/// A first attempt at an upstream request.
pub(super) fn fetch_step(
    request: Request<Vec<u8>>,
    read_body: Option<usize>,
    state: State,
    summary: Summary,
) -> Step {
    let resend = Resend::of(&request, read_body);
    Step::Fetch(Box::new(Fetch {
        request,
        read_body,
        delay: Duration::ZERO,
        pending: Pending {
            state,
            summary,
            attempt: 1,
            resend,
        },
    }))
}

/// A store lookup before `get` would be fetched.
impl Mirror {
    /// Look `key` up in the store, then go on as `then` says. The adapter is told whether the
    /// object's bytes would be served (a `GET` not answered by a redirect to the store), so that
    /// a backend may start reading them with the lookup: a read that cannot start in time is
    /// then a miss, never a response cut after its head.
    pub(super) fn lookup_step(
        &self,
        key: String,
        then: OnLookup,
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        summary: Summary,
    ) -> Step {
        let redirected =
            matches!(resource.route, Route::Blob { .. }) && self.config.store_redirects;
        let opens_body = resource.method == Method::GET && !redirected;
        let peek = resource.method == Method::HEAD;
        let state = State::Lookup {
            resource,
            get,
            key: key.clone(),
            then,
        };
        let mut lookup = store_step(key, state, summary);
        lookup.opens_body = opens_body;
        lookup.peek = peek;
        Step::Lookup(Box::new(lookup))
    }
}

pub(super) fn fill_step(write: StoreWrite, state: State, summary: Summary) -> Step {
    let Lookup { pending, .. } = store_step(write.key.clone(), state, summary);
    Step::Fill(Box::new(Fill { write, pending }))
}

/// A store lookup or recall: no upstream request, so what it keeps to resend is never used.
pub(super) fn store_step(key: String, state: State, summary: Summary) -> Lookup {
    let resend = Resend {
        method: Method::GET,
        uri: http::Uri::default(),
        headers: HeaderMap::new(),
        read_body: None,
    };
    Lookup {
        key,
        opens_body: false,
        peek: false,
        pending: Pending {
            state,
            summary,
            attempt: 1,
            resend,
        },
    }
}

/// The same request again after a pause, when the failure is `retryable` and attempts remain;
/// the pending state back if not, to answer with.
pub(super) fn retry(retryable: bool, pending: Pending) -> Result<Step, Box<Pending>> {
    if !retryable || pending.attempt >= MAX_ATTEMPTS {
        return Err(Box::new(pending));
    }
    let resend = pending.resend.clone();
    let mut request = Request::new(Vec::new());
    *request.method_mut() = resend.method;
    *request.uri_mut() = resend.uri;
    *request.headers_mut() = resend.headers;
    Ok(Step::Fetch(Box::new(Fetch {
        request,
        read_body: resend.read_body,
        delay: backoff(pending.attempt),
        pending: Pending {
            attempt: pending.attempt + 1,
            ..pending
        },
    })))
}
