//! `topgun etcd browse`: a small web UI over etcd, served from the binary.
//!
//! The page, its script and its style are embedded (no build step, no
//! external URLs). Every request must carry the per-run token as the first
//! path segment (compared in constant time), a `Host` naming the listening
//! address (against DNS rebinding) and, when the browser sends one, an
//! `Origin` of the same host; no CORS headers are ever sent. Writes need
//! `--write`. The data side is `topgun_etcd::browse`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, ORIGIN};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use topgun_etcd::{Checker, HealthReport, MemberStatus};

use super::super::EXIT_SUCCESS;
use crate::cli::etcd::BrowseArgs;
use crate::output;

const INDEX_HTML: &str = include_str!("browse/index.html");
const APP_JS: &str = include_str!("browse/app.js");
const APP_CSS: &str = include_str!("browse/app.css");

/// Children listed per tree level.
const TREE_LIMIT: usize = 1000;
/// Levels read together by one `api/levels` request.
const MAX_LEVELS: usize = 8;
/// Earlier revisions shown per key.
const HISTORY: usize = 10;
/// The largest body a put may carry (etcd's default request limit).
const MAX_BODY: usize = 3 << 19;

/// A cluster's etcd members as Docker saw them at start: names, client
/// endpoints of the running ones, container states.
#[derive(Debug, Clone)]
pub struct ClusterMembers {
    /// Every member: its container name and, when it ran, its endpoint.
    pub members: Vec<(String, Option<String>)>,
    /// Each member's container state, in member order.
    pub states: Vec<String>,
}

/// What every request handler shares.
struct State {
    checker: Checker,
    /// For a cluster by name: members not running at start count as down.
    cluster: Option<ClusterMembers>,
    token: String,
    write: bool,
    /// The port served on: a `Host` must name it.
    port: u16,
}

/// Runs `topgun etcd browse` until Ctrl-C. The URL goes to stdout; with
/// `quiet`, nothing else.
pub async fn run(
    args: BrowseArgs,
    checker: Checker,
    cluster: Option<ClusterMembers>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        output::warn(&format!(
            "listening on {addr}, not loopback: anyone who can reach this address and learns the URL can read{} etcd",
            if args.write { " and write" } else { "" }
        ));
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    let state = Arc::new(State {
        checker,
        cluster,
        port: addr.port(),
        token: token.clone(),
        write: args.write,
    });
    let url = format!("http://{}/{token}/", display_addr(addr));
    if !quiet {
        output::progress(&format!(
            "serving etcd ({}) on {addr}; {}; Ctrl-C stops",
            state.checker.endpoints().join(", "),
            if args.write {
                "writes allowed"
            } else {
                "read-only"
            }
        ));
    }
    output::result(&url);
    if args.open {
        open_browser(&url);
    }
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
    if !quiet {
        output::progress("stopped");
    }
    Ok(ExitCode::from(EXIT_SUCCESS))
}

/// The address for the printed URL: loopback when listening on all addresses.
fn display_addr(addr: SocketAddr) -> String {
    let addr = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Whether a `Host` header may reach the UI: an IP address or `localhost`,
/// with our port. A DNS name other than `localhost` is refused: that is
/// what a DNS-rebinding page would send.
fn host_allowed(host: &str, port: u16) -> bool {
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    if p.parse::<u16>().ok() != Some(port) {
        return false;
    }
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn open_browser(url: &str) {
    match std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => {}
        Err(e) => output::warn(&format!(
            "cannot open a browser (xdg-open: {e}); open the URL yourself"
        )),
    }
}

/// A status round over the running members, completed with the members
/// that were not running at start (unreachable, with their container
/// state) and judged again, as `topgun etcd status NAME` does.
fn with_stopped_members(report: HealthReport, cluster: &ClusterMembers) -> HealthReport {
    if cluster.members.iter().all(|(_, e)| e.is_some()) {
        return report;
    }
    let mut answered = report.members.into_iter();
    let states = cluster
        .states
        .iter()
        .map(String::as_str)
        .chain(std::iter::repeat("stopped"));
    let members: Vec<MemberStatus> = cluster
        .members
        .iter()
        .zip(states)
        .map(|((name, endpoint), state)| match endpoint {
            Some(e) => answered
                .next()
                .unwrap_or_else(|| MemberStatus::unreachable(e, "not asked")),
            None => MemberStatus::unreachable(
                name.clone(),
                format!("its container is not running: {state}"),
            ),
        })
        .collect();
    HealthReport {
        health: topgun_etcd::assess(&members),
        members,
        took: report.took,
    }
}

/// Compares in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header("cache-control", "no-store")
        .header(
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .header("cross-origin-resource-policy", "same-origin")
        .body(Full::new(body.into()))
        .expect("valid response")
}

fn refuse(status: StatusCode, why: &str) -> Resp {
    respond(status, "text/plain; charset=utf-8", format!("{why}\n"))
}

fn json<T: Serialize>(value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn etcd_error(e: &topgun_etcd::Error) -> Resp {
    #[derive(Serialize)]
    struct ErrorJson {
        error: String,
    }
    let body = serde_json::to_vec(&ErrorJson {
        error: e.to_string(),
    })
    .unwrap_or_default();
    respond(StatusCode::BAD_GATEWAY, "application/json", body)
}

/// Checks `Host`, `Origin` and the token, in that order; returns the path
/// after the token.
fn authorize<'a>(req: &'a Request<Incoming>, state: &State) -> Result<&'a str, &'static str> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, state.port) {
        return Err("forbidden: unexpected Host");
    }
    if let Some(origin) = req.headers().get(ORIGIN) {
        let expected = format!("http://{host}");
        if !origin
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&expected))
        {
            return Err("forbidden: cross-origin request");
        }
    }
    let path = req.uri().path().strip_prefix('/').unwrap_or("");
    let (token, rest) = path.split_once('/').unwrap_or((path, ""));
    if !constant_time_eq(token.as_bytes(), state.token.as_bytes()) {
        return Err("forbidden: this URL lacks the token topgun etcd browse printed");
    }
    Ok(rest)
}

/// One query parameter, percent-decoded.
fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    query_params(req, name).into_iter().next()
}

/// Every value of a query parameter, percent-decoded, in order.
fn query_params(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = bytes.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
struct WriteRequest {
    key: String,
    value: Option<String>,
}

#[derive(Serialize)]
struct ConfigJson {
    write: bool,
}

#[derive(Serialize)]
struct WriteJson {
    ok: bool,
    revision: Option<i64>,
    deleted: Option<i64>,
}

async fn handle(req: Request<Incoming>, state: &State) -> Resp {
    let rest = match authorize(&req, state) {
        Ok(rest) => rest.to_owned(),
        Err(why) => return refuse(StatusCode::FORBIDDEN, why),
    };
    if rest.is_empty() && !req.uri().path().ends_with('/') {
        // The page's relative URLs need the trailing slash.
        let mut resp = refuse(StatusCode::PERMANENT_REDIRECT, "moved");
        if let Ok(location) = format!("/{}/", state.token).parse() {
            resp.headers_mut().insert(hyper::header::LOCATION, location);
        }
        return resp;
    }
    match (req.method(), rest.as_str()) {
        (&Method::GET, "") => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        (&Method::GET, "app.js") => {
            respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
        }
        (&Method::GET, "app.css") => respond(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        (&Method::GET, "api/config") => json(&ConfigJson { write: state.write }),
        (&Method::GET, "api/status") => {
            let report = state.checker.check().await;
            json(&match &state.cluster {
                Some(cluster) => with_stopped_members(report, cluster),
                None => report,
            })
        }
        (&Method::GET, "api/tree") => {
            let prefix = query_param(&req, "prefix").unwrap_or_default();
            let after = query_param(&req, "after").unwrap_or_default();
            match state.checker.tree(&prefix, &after, TREE_LIMIT).await {
                Ok(level) => json(&level),
                Err(e) => etcd_error(&e),
            }
        }
        (&Method::GET, "api/levels") => {
            // Nested levels in one scan (the page's first view).
            let prefixes = query_params(&req, "prefix");
            if prefixes.is_empty() || prefixes.len() > MAX_LEVELS {
                return refuse(StatusCode::BAD_REQUEST, "give 1 to 8 prefix parameters");
            }
            let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
            match state.checker.tree_levels(&prefixes, "", TREE_LIMIT).await {
                Ok(levels) => json(&levels),
                Err(e) => etcd_error(&e),
            }
        }
        (&Method::GET, "api/value") => {
            let Some(key) = query_param(&req, "key") else {
                return refuse(StatusCode::BAD_REQUEST, "missing key");
            };
            match state.checker.value(&key, HISTORY).await {
                Ok(view) => json(&view),
                Err(e) => etcd_error(&e),
            }
        }
        (&Method::POST, "api/put" | "api/delete") => {
            if !state.write {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden: read-only; restart with --write to put and delete",
                );
            }
            let is_json = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if !is_json {
                return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected JSON");
            }
            let delete = rest == "api/delete";
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            };
            let Ok(write) = serde_json::from_slice::<WriteRequest>(&body) else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "expected {\"key\": ..., \"value\": ...}",
                );
            };
            if delete {
                match state.checker.delete(&write.key).await {
                    Ok(n) => json(&WriteJson {
                        ok: true,
                        revision: None,
                        deleted: Some(n),
                    }),
                    Err(e) => etcd_error(&e),
                }
            } else {
                let value = write.value.unwrap_or_default();
                match state.checker.put(&write.key, value).await {
                    Ok(rev) => json(&WriteJson {
                        ok: true,
                        revision: Some(rev),
                        deleted: None,
                    }),
                    Err(e) => etcd_error(&e),
                }
            }
        }
        _ => refuse(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(endpoint: &str, id: u64) -> MemberStatus {
        MemberStatus {
            endpoint: endpoint.into(),
            reachable: true,
            member_id: id,
            cluster_id: 9,
            leader_id: 1,
            raft_term: 2,
            ..MemberStatus::default()
        }
    }

    #[test]
    fn stopped_members_count_as_down() {
        let members = vec![up("https://127.0.0.1:1", 1), up("https://127.0.0.1:3", 3)];
        let report = HealthReport {
            health: topgun_etcd::assess(&members),
            members,
            took: Duration::ZERO,
        };
        assert!(report.health.is_healthy());
        let cluster = ClusterMembers {
            members: vec![
                ("etcd-0".into(), Some("https://127.0.0.1:1".into())),
                ("etcd-1".into(), None),
                ("etcd-2".into(), Some("https://127.0.0.1:3".into())),
            ],
            states: vec![
                "running".into(),
                "exited with code 137".into(),
                "running".into(),
            ],
        };
        let report = with_stopped_members(report, &cluster);
        assert_eq!(report.health.verdict, topgun_etcd::Verdict::Degraded);
        let endpoints: Vec<&str> = report.members.iter().map(|m| m.endpoint.as_str()).collect();
        assert_eq!(
            endpoints,
            ["https://127.0.0.1:1", "etcd-1", "https://127.0.0.1:3"]
        );
        assert!(
            report.members[1]
                .error
                .as_deref()
                .unwrap()
                .contains("exited with code 137")
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"abcd"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("%2Fregistry%2Fminions%2F"),
            "/registry/minions/"
        );
        assert_eq!(percent_decode("a%zzb%2"), "a%zzb%2");
        assert_eq!(percent_decode("%E2%9C%93"), "\u{2713}");
    }

    #[test]
    fn hosts_are_addresses_or_localhost_on_our_port() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "10.0.0.5:8080",
        ] {
            assert!(host_allowed(ok, 8080), "{ok}");
        }
        for refused in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "",
            "localhost.evil:8080",
            "[::1]",
        ] {
            assert!(!host_allowed(refused, 8080), "{refused}");
        }
        assert_eq!(display_addr("0.0.0.0:80".parse().unwrap()), "127.0.0.1:80");
        assert_eq!(display_addr("[::]:80".parse().unwrap()), "[::1]:80");
        assert_eq!(display_addr("10.0.0.5:80".parse().unwrap()), "10.0.0.5:80");
    }
}
