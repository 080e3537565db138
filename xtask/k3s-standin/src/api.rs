//! The HTTPS endpoint on the API port: the slice of the Kubernetes API that
//! kubectl and topgun use, and the k3s supervisor endpoints joiners and
//! agents use.
//!
//! Kubernetes paths need a client certificate signed by the cluster's
//! client CA (k3s runs the API server with anonymous auth off); other
//! certificates fail the TLS handshake. Supervisor paths (`/ping`,
//! `/cacerts`, `/v1-k3s/...`) take no certificate; the `/v1-k3s/` ones
//! take the token as basic auth, like k3s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Secret;
use crate::nodes::{self, NodeReport};
use crate::registry::{NODES_PATH, Registry};
use crate::{VERSION, log};

/// What the endpoint serves.
pub struct ApiState {
    /// The node registry.
    pub registry: Registry,
    /// The server CA, PEM (served at `/cacerts`).
    pub server_ca_pem: String,
    /// The bootstrap data sealed with the token (served to joining servers).
    pub sealed_bootstrap: String,
    /// The token password.
    pub password: Secret,
    /// The address clients are told to use (`serverAddressByClientCIDRs`).
    pub advertise: String,
}

/// TLS settings: the serving certificate, optional client certificates
/// checked against `client_ca_pem`, and only `http/1.1` by ALPN.
pub fn tls_acceptor(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections forever.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, state: Arc<ApiState>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::error(format!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move { connection(tcp, peer, acceptor, state).await });
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    _peer: SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<ApiState>,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
    else {
        return;
    };
    let authenticated = tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    let service = service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(req, &state, authenticated).await) }
    });
    let _ = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header("cache-control", "no-cache, private")
        .body(Full::new(body.into()))
        .expect("valid response")
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).expect("json"),
    )
}

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    respond(status, "text/plain; charset=utf-8", body.into())
}

/// A `Status` object, as the API server returns errors.
fn status(code: StatusCode, reason: &str, message: &str) -> Resp {
    json_resp(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

fn unauthorized_basic() -> Resp {
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        "Basic realm=\"k3s\"".parse().expect("header"),
    );
    r
}

/// The basic-auth user, if the password matches the token's.
fn basic_user(req: &Request<Incoming>, password: &Secret) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let creds = B64.decode(value.strip_prefix("Basic ")?.trim()).ok()?;
    let creds = String::from_utf8(creds).ok()?;
    let (user, pass) = creds.split_once(':')?;
    // Compare digests, so the comparison takes the same time for any input.
    (Sha256::digest(pass.as_bytes()) == Sha256::digest(password.expose().as_bytes()))
        .then(|| user.to_owned())
}

async fn handle(req: Request<Incoming>, state: &ApiState, authenticated: bool) -> Resp {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    match (method.clone(), path.as_str()) {
        (Method::GET, "/ping") => return text(StatusCode::OK, "pong"),
        (Method::GET, "/cacerts") => return text(StatusCode::OK, state.server_ca_pem.clone()),
        (Method::GET, "/v1-k3s/server-bootstrap") => {
            return match basic_user(&req, &state.password).as_deref() {
                Some("server") => text(StatusCode::OK, state.sealed_bootstrap.clone()),
                _ => unauthorized_basic(),
            };
        }
        (Method::POST, NODES_PATH) => {
            if !matches!(
                basic_user(&req, &state.password).as_deref(),
                Some("server" | "node")
            ) {
                return unauthorized_basic();
            }
            let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => return text(StatusCode::BAD_REQUEST, "bad body\n"),
            };
            let report: NodeReport = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad node report: {e}\n")),
            };
            if let Err(e) = crate::config::validate_node_name(&report.name) {
                return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
            return match state.registry.heartbeat(&report).await {
                Ok(created) => json_resp(StatusCode::OK, &json!({"created": created})),
                Err(e) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("storing node status: {e}\n"),
                ),
            };
        }
        (Method::GET, NODES_PATH) => {
            if basic_user(&req, &state.password).as_deref() != Some("server") {
                return unauthorized_basic();
            }
            return match state.registry.nodes_json().await {
                Ok(v) => json_resp(StatusCode::OK, &v),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            };
        }
        (Method::DELETE, p) if p.starts_with(&format!("{NODES_PATH}/")) => {
            if basic_user(&req, &state.password).as_deref() != Some("server") {
                return unauthorized_basic();
            }
            let name = &p[NODES_PATH.len() + 1..];
            return match state.registry.delete(name).await {
                Ok(Some(node)) => json_resp(StatusCode::OK, &node),
                Ok(None) => text(StatusCode::NOT_FOUND, "node not found\n"),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            };
        }
        _ => {}
    }
    if path.starts_with("/v1-k3s/") {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if !authenticated {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if method == Method::DELETE {
        return match path.trim_end_matches('/').strip_prefix("/api/v1/nodes/") {
            Some(name) if !name.is_empty() && !name.contains('/') => delete_node(state, name).await,
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the k3s stand-in deletes only nodes",
            ),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the k3s stand-in serves only reads and deletes of nodes",
        );
    }
    let verbose = query
        .split('&')
        .any(|q| q == "verbose" || q.starts_with("verbose="));
    match path.trim_end_matches('/') {
        "/readyz" | "/livez" | "/healthz" => health(&path, verbose, state).await,
        "/version" => json_resp(StatusCode::OK, &version_info()),
        "/api" => json_resp(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.advertise}],
            }),
        ),
        "/apis" => json_resp(
            StatusCode::OK,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        "/api/v1" => json_resp(
            StatusCode::OK,
            &json!({
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node",
                     "verbs": ["delete", "get", "list"], "shortNames": ["no"]},
                    {"name": "nodes/status", "singularName": "", "namespaced": false, "kind": "Node",
                     "verbs": ["get"]},
                ],
            }),
        ),
        "/api/v1/nodes" => {
            let wants_table = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("as=Table"));
            match field_selector(&query) {
                Ok(selector) => list_nodes(state, wants_table, selector).await,
                Err(e) => status(StatusCode::BAD_REQUEST, "BadRequest", &e),
            }
        }
        p => match p.strip_prefix("/api/v1/nodes/") {
            Some(rest) => {
                let name = rest.strip_suffix("/status").unwrap_or(rest);
                get_node(state, name).await
            }
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            ),
        },
    }
}

async fn health(path: &str, verbose: bool, state: &ApiState) -> Resp {
    let name = path.trim_start_matches('/').trim_end_matches('/');
    let store = if name == "livez" {
        Ok(())
    } else {
        state.registry.check().await
    };
    let ok = store.is_ok();
    if !verbose {
        return if ok {
            text(StatusCode::OK, "ok")
        } else {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("[-]etcd failed: reason withheld\n{name} check failed\n"),
            )
        };
    }
    let mut out = String::from("[+]ping ok\n[+]log ok\n");
    out.push_str(if ok {
        "[+]etcd ok\n"
    } else {
        "[-]etcd failed: reason withheld\n"
    });
    if ok {
        out.push_str(&format!("{name} check passed\n"));
        text(StatusCode::OK, out)
    } else {
        out.push_str(&format!("{name} check failed\n"));
        text(StatusCode::INTERNAL_SERVER_ERROR, out)
    }
}

/// The `/version` body.
pub fn version_info() -> Value {
    let (major, minor) = {
        let v = VERSION.trim_start_matches('v');
        let mut it = v.split('.');
        (
            it.next().unwrap_or("1").to_owned(),
            it.next().unwrap_or("0").to_owned(),
        )
    };
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": concat!("none (k3s-standin ", env!("CARGO_PKG_VERSION"), ", Rust)"),
        "compiler": "rustc",
        "platform": format!("linux/{}", match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

/// Decodes `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `fieldSelector` on nodes: the API server supports `metadata.name`
/// (`=`, `==`, `!=`) on every resource; kubectl uses it to wait for a
/// deletion. `(name, equal)` pairs; other fields are a 400, as for nodes
/// the stand-in has no other field labels.
type Selector = Vec<(String, bool)>;

fn field_selector(query: &str) -> Result<Selector, String> {
    let mut out = Vec::new();
    for pair in query.split('&') {
        let Some(value) = pair.strip_prefix("fieldSelector=") else {
            continue;
        };
        for term in percent_decode(value).split(',').filter(|t| !t.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            if field.trim() != "metadata.name" {
                return Err(format!("field label not supported: {}", field.trim()));
            }
            out.push((value.trim().to_owned(), equal));
        }
    }
    Ok(out)
}

fn selected(node: &Value, selector: &Selector) -> bool {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    selector.iter().all(|(v, equal)| (name == v) == *equal)
}

async fn delete_node(state: &ApiState, name: &str) -> Resp {
    match state.registry.delete(name).await {
        // As the API server answers a delete that needs no finalizing: a
        // success Status naming the object and its uid.
        Ok(Some(node)) => json_resp(
            StatusCode::OK,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "kind": "nodes",
                    "uid": node.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                },
            }),
        ),
        Ok(None) => not_found(name),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("etcd: {e}"),
        ),
    }
}

fn not_found(name: &str) -> Resp {
    json_resp(
        StatusCode::NOT_FOUND,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("nodes \"{name}\" not found"),
            "reason": "NotFound",
            "details": {"name": name, "kind": "nodes"},
            "code": 404,
        }),
    )
}

async fn list_nodes(state: &ApiState, table: bool, selector: Selector) -> Resp {
    let (items, rv) = match state.registry.nodes().await {
        Ok(r) => r,
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("etcd: {e}"),
            );
        }
    };
    let now = OffsetDateTime::now_utc();
    let items: Vec<Value> = items
        .into_iter()
        .filter(|n| selected(n, &selector))
        .map(|n| nodes::observe(n, now))
        .collect();
    if table {
        json_resp(StatusCode::OK, &nodes::node_table(&items, &rv, now))
    } else {
        json_resp(StatusCode::OK, &nodes::node_list(items, &rv))
    }
}

async fn get_node(state: &ApiState, name: &str) -> Resp {
    let (items, _) = match state.registry.nodes().await {
        Ok(r) => r,
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("etcd: {e}"),
            );
        }
    };
    match items
        .into_iter()
        .find(|n| n.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
    {
        Some(n) => json_resp(
            StatusCode::OK,
            &nodes::observe(n, OffsetDateTime::now_utc()),
        ),
        None => not_found(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_as_kubectl_sends_them() {
        assert_eq!(
            percent_decode("metadata.name%3Dagent-0"),
            "metadata.name=agent-0"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        let sel = field_selector("limit=500&fieldSelector=metadata.name%3Dagent-0").unwrap();
        assert_eq!(sel, vec![("agent-0".to_owned(), true)]);
        let node = |n: &str| json!({"metadata": {"name": n}});
        assert!(selected(&node("agent-0"), &sel));
        assert!(!selected(&node("server-0"), &sel));
        let not = field_selector("fieldSelector=metadata.name!%3Dagent-0").unwrap();
        assert!(selected(&node("server-0"), &not));
        assert!(field_selector("").unwrap().is_empty());
        assert!(
            field_selector("fieldSelector=spec.unschedulable%3Dtrue")
                .unwrap_err()
                .contains("field label not supported")
        );
    }
}
