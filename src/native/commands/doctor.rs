//! `registry-mirror doctor`: checks, from where the server runs and with its settings, what a
//! pull needs, and says what is wrong and how to fix it: the settings, the HTTP proxy, each
//! configured registry (its name, its connection, its `/v2/` and its token service, the mirror's
//! own accounts there), Docker Hub's storage hosts, the clock, and the store (written, read back
//! and deleted). When a pull fails with `503`, this is where to look first.
//!
//! It asks nothing that counts as a pull (no manifest), and dials only the hosts the server
//! would: the configured upstreams, the token service they name, Docker Hub's storage hosts when
//! Docker Hub is the upstream, the proxy and the store's bucket.

use super::refuse;
use crate::auth::BasicCredentials;
use crate::mirror::Unreachable;
use crate::native::drive::fetch::{through_proxy, unreachable};
use crate::native::drive::upstream_client;
use crate::native::store::ContentStore;
use crate::registry::{Registry, DOCKER_HUB_STORAGE_HOSTS};
use crate::store::StoreSetting;
use crate::Config;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Check the settings, the proxy, each upstream and its token service, the clock and the store
#[derive(clap::Args)]
#[command(
    after_help = "Run it where the server runs, with the server's settings (the same \
    environment): docs/operations.md says how on each deployment. Exit status: 0 when every \
    check passed, 1 when one failed, 2 when the settings are refused."
)]
pub struct Args {}

/// How long a check waits for an answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// A clock this far from an upstream's is reported.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The checks' findings, printed as they come.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: &str, said: &str) {
        println!("ok    {what}: {said}");
    }

    fn fail(&mut self, what: &str, said: &str, fix: &str) {
        self.failed += 1;
        println!("FAIL  {what}: {said}\n      fix: {fix}");
    }

    fn note(&mut self, what: &str, said: &str) {
        println!("note  {what}: {said}");
    }
}

pub fn run(_args: Args) -> ExitCode {
    let mut config = match super::config_with(&[]) {
        Ok(config) => config,
        Err(e) => return refuse("doctor", &format!("the settings are refused: {e}")),
    };
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(e) => return refuse("doctor", &e),
    };
    let client = match upstream_client(CHECK_TIMEOUT) {
        Ok(client) => client,
        Err(e) => return refuse("doctor", &e),
    };
    let mut report = Report::default();
    report.ok("settings", "accepted");
    runtime.block_on(async {
        proxy(&mut report).await;
        for registry in config.registries.iter() {
            upstream(&mut report, &client, registry).await;
        }
        store(&mut report, &mut config).await;
    });
    match report.failed {
        0 => {
            println!("every check passed");
            ExitCode::SUCCESS
        }
        n => {
            println!("{n} check(s) failed");
            ExitCode::from(1)
        }
    }
}

/// The proxy the HTTP clients use, if any, and whether it takes connections.
async fn proxy(report: &mut Report) {
    let set = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|name| std::env::var(name).ok().map(|v| (*name, v)));
    let Some((name, value)) = set else {
        report.note(
            "proxy",
            "none (HTTPS_PROXY unset): upstreams are dialled directly",
        );
        return;
    };
    let shown = crate::config::redact(&value);
    let Ok(url) = value.parse::<http::Uri>() else {
        return report.fail(
            "proxy",
            &format!("{name}={shown} is not a URL"),
            "write http://host:port",
        );
    };
    let host = url.host().unwrap_or_default().to_string();
    let port = url.port_u16().unwrap_or(80);
    let connected = tokio::time::timeout(
        CHECK_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await;
    match connected {
        Ok(Ok(_)) => report.ok("proxy", &format!("{name}={shown} takes connections")),
        Ok(Err(e)) => report.fail(
            "proxy",
            &format!("{name}={shown}: {e}"),
            "check the proxy's address and that it runs; NO_PROXY lists hosts dialled directly",
        ),
        Err(_) => report.fail(
            "proxy",
            &format!("{name}={shown}: no answer"),
            "check the proxy's address",
        ),
    }
}

/// One registry: `/v2/` answers (200 or 401), its token service answers, each of the mirror's
/// accounts there is accepted, and its clock agrees with this machine's.
async fn upstream(report: &mut Report, client: &reqwest::Client, registry: &Registry) {
    let what = format!("{} ({})", registry.name, registry.upstream.authority());
    let answer = match client.get(registry.upstream.url("/v2/")).send().await {
        Ok(answer) => answer,
        Err(e) => {
            let (said, fix) = why(&e);
            return report.fail(&what, &said, fix);
        }
    };
    clock(report, &what, &answer);
    let status = answer.status().as_u16();
    if !matches!(status, 200 | 401) {
        return report.fail(
            &what,
            &format!("GET /v2/ answered {status}"),
            "check UPSTREAM_ for this registry: it must be a registry's API address",
        );
    }
    let path = match through_proxy(&registry.upstream.url("/v2/").parse().unwrap_or_default()) {
        true => " (through the HTTP proxy)",
        false => "",
    };
    report.ok(&what, &format!("GET /v2/ answered {status}{path}"));
    let Some((realm, service)) = challenge(&answer) else {
        return;
    };
    let scope = match &registry.official_namespace {
        Some(namespace) => format!("repository:{namespace}/alpine:pull"),
        None => String::new(),
    };
    let mut token_url = format!("{realm}?service={service}");
    if !scope.is_empty() {
        token_url.push_str(&format!("&scope={scope}"));
    }
    let token_host = token_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_default();
    let what = format!("{} token service ({token_host})", registry.name);
    let accounts: Vec<Option<&BasicCredentials>> = std::iter::once(None)
        .chain(registry.accounts.iter().map(Some))
        .collect();
    for account in accounts {
        let mut request = client.get(&token_url);
        let who = match account {
            Some(a) => {
                request = request.basic_auth(&a.user, Some(&a.password));
                format!("account {}", a.user)
            }
            None => "anonymous".to_string(),
        };
        match request.send().await.map(|a| a.status().as_u16()) {
            Ok(200) => report.ok(&what, &format!("{who}: a token")),
            Ok(401) | Ok(403) if account.is_some() => report.fail(
                &what,
                &format!("{who}: refused"),
                "the token in UPSTREAM_AUTH_ for this registry is wrong, expired or revoked",
            ),
            Ok(status) => report.fail(
                &what,
                &format!("{who}: answered {status}"),
                "the token service refuses anonymous tokens: set UPSTREAM_AUTH_ for this registry",
            ),
            Err(e) => {
                let (said, fix) = why(&e);
                report.fail(&what, &said, fix);
            }
        }
    }
    if registry.upstream.authority() == "registry-1.docker.io" {
        storage_hosts(report, client).await;
    }
}

/// Docker Hub's blob storage hosts, which its blob redirects point at: reachable over TLS.
async fn storage_hosts(report: &mut Report, client: &reqwest::Client) {
    for host in DOCKER_HUB_STORAGE_HOSTS {
        let what = format!("docker.io storage ({host})");
        match client.head(format!("https://{host}/")).send().await {
            Ok(answer) => report.ok(&what, &format!("answered {}", answer.status().as_u16())),
            Err(e) => {
                let (said, fix) = why(&e);
                report.fail(&what, &said, fix);
            }
        }
    }
}

/// The realm and service of a `401`'s Bearer challenge.
fn challenge(answer: &reqwest::Response) -> Option<(String, String)> {
    let header = answer.headers().get("www-authenticate")?.to_str().ok()?;
    let rest = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))?;
    let param = |name: &str| {
        let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
        let end = rest[start..].find('"')? + start;
        Some(rest[start..end].to_string())
    };
    Some((param("realm")?, param("service").unwrap_or_default()))
}

/// This machine's clock against an upstream's `Date`: tokens and S3 signatures are refused past
/// a few minutes of difference, and certificates look not yet valid.
fn clock(report: &mut Report, what: &str, answer: &reqwest::Response) {
    let Some(date) = answer
        .headers()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        return;
    };
    let now = SystemTime::now();
    let skew = match now.duration_since(date) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > CLOCK_SKEW {
        report.fail(
            &format!("clock (against {what})"),
            &format!("{} s apart", skew.as_secs()),
            "set the time (systemd-timesyncd, chrony or ntpd)",
        );
    }
}

/// What failed and how to fix it, by the cause of a connection that failed.
fn why(error: &reqwest::Error) -> (String, &'static str) {
    let cause = if error.is_timeout() {
        return (
            format!("no answer in {} s", CHECK_TIMEOUT.as_secs()),
            "a firewall that drops packets, or a network that needs a proxy (HTTPS_PROXY)",
        );
    } else if error.is_connect() {
        unreachable(error)
    } else {
        return (
            format!("the connection broke ({error})"),
            "try again; if it repeats, a proxy or firewall in the way is cutting connections",
        );
    };
    let fix = match cause {
        Unreachable::Dns => {
            "this machine cannot resolve the name: check its resolver (/etc/resolv.conf), or \
             set HTTPS_PROXY if only a proxy reaches the internet"
        }
        Unreachable::Refused => {
            "the host or a firewall refuses: allow outgoing connections to it, or set HTTPS_PROXY"
        }
        Unreachable::Tls => {
            "check the clock; behind a TLS-inspecting proxy the mirror trusts only the public CAs"
        }
        Unreachable::Proxy => "check HTTPS_PROXY's address and that it allows CONNECT to this host",
        Unreachable::Unknown => "check the network path to the host",
    };
    (cause.says().to_string(), fix)
}

/// The store `CACHE` names: an object written, read back and deleted there, as the server's
/// would be; a directory's free room against `CACHE_MAX_BYTES`.
async fn store(report: &mut Report, config: &mut Config) {
    let dir = match &config.store {
        StoreSetting::None => return report.note("store", "CACHE=none: no store"),
        StoreSetting::Edge => {
            return report.note("store", "Fastly's cache: not reachable from here")
        }
        StoreSetting::Directory(dir) => Some(std::path::PathBuf::from(dir)),
        StoreSetting::Unset => crate::native::store::disk::default_dir(),
        StoreSetting::Bucket { .. } => None,
    };
    if let Some(dir) = &dir {
        if !dir.join("objects").is_dir() {
            let parent = dir.ancestors().skip(1).find(|p| p.exists());
            return report.note(
                "store",
                &format!(
                    "no store at {} yet: the server makes it at start (it needs to write in {})",
                    dir.display(),
                    parent.map_or("its parent".to_string(), |p| p.display().to_string())
                ),
            );
        }
    }
    let opened = match ContentStore::open_for_command(config, false) {
        Ok(store) => store,
        Err(e) => return report.fail("store", &e, "check CACHE"),
    };
    let what = format!("store ({})", opened.describe());
    let fix = match dir {
        Some(_) => {
            "run doctor as the server's user; a store someone else made must be given to that \
             user (chown -R)"
        }
        None => "check the bucket's name, region and credentials, and the permissions in docs/operations.md",
    };
    match opened.probe().await {
        Ok(()) => report.ok(&what, "an object written, read back and deleted"),
        Err(e) => return report.fail(&what, &e, fix),
    }
    if let (Some(dir), Some(used)) = (dir, opened.used_bytes()) {
        if let Some(free) = free_bytes(&dir) {
            let wanted = config.store_max_bytes.saturating_sub(used);
            if free < wanted {
                report.fail(
                    &what,
                    &format!(
                        "{} free, but CACHE_MAX_BYTES leaves room for {} more",
                        super::bytes(free),
                        super::bytes(wanted)
                    ),
                    "lower CACHE_MAX_BYTES or free the disk: a full disk makes every fill fail",
                );
            }
        }
    }
}

/// The bytes free for an unprivileged user on the file system of `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a place for the answer.
    let ok = unsafe { libc::statvfs(path.as_ptr(), &mut stat) } == 0;
    ok.then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}
