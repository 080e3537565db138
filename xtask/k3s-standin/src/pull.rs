//! Image pulls over the Registry HTTP API v2, as containerd's resolver and
//! fetcher do them: the endpoints of `registries.yaml` in order (mirrors
//! with their rewrites, then the default endpoint), the manifest resolved
//! on the first endpoint that has it, then the config and every layer
//! fetched from that endpoint and checked against their sha256 digests.
//!
//! Like every image the stand-in has, a pulled image is a record in the
//! node's image store (what `ctr images import` writes); the blobs are
//! fetched and verified, then dropped: nothing is unpacked or run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::images::{
    self, Descriptor, Found, IndexDoc, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST, ManifestDoc, Platform,
};
use crate::registries::{self, Endpoint, RegistryConfig};

/// containerd's log, under the data dir.
pub const CONTAINERD_LOG: &str = "agent/containerd/containerd.log";
/// The system's CA bundle (Debian's), trusted besides a `ca_file`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Connecting and receiving the response headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for the next piece of a body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest manifest, index or config read (containerd's limit).
const DOCUMENT_LIMIT: usize = 4 << 20;
/// Redirects followed per request (registries redirect blobs to storage).
const MAX_REDIRECTS: usize = 5;
/// What a manifest request accepts.
const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// A reference split as a pull needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The normalised name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The registry host (`docker.io`, `registry.localhost:5000`).
    pub registry: String,
    /// The repository path (`library/busybox`).
    pub repository: String,
    /// The tag or the digest.
    pub object: String,
    /// The digest, when the reference has one.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference (`busybox` ->
    /// `docker.io/library/busybox:latest`).
    pub fn parse(raw: &str) -> Result<Reference, String> {
        let name = images::normalize_reference(raw)?;
        let (registry, rest) = name
            .split_once('/')
            .ok_or_else(|| format!("invalid reference {raw:?}"))?;
        let (repository, object, digest) = match rest.split_once('@') {
            Some((repo, d)) => (repo, d, Some(d.to_owned())),
            None => {
                let (repo, tag) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| format!("invalid reference {raw:?}"))?;
                (repo, tag, None)
            }
        };
        Ok(Reference {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            object: object.to_owned(),
            digest,
            name,
        })
    }

    /// `registry/repository@digest`: the repo digest name of a target.
    pub fn digest_name(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

/// Credentials given on the command line (`crictl pull --creds`, `ctr
/// pull --user`), which win over `registries.yaml`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials(pub Option<(String, String)>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Credentials(<set>)"
        } else {
            "Credentials(none)"
        })
    }
}

/// What went wrong at one endpoint.
#[derive(Debug)]
enum Failure {
    /// The endpoint does not have the reference (404).
    NotFound,
    /// Anything else, in containerd's words.
    Other(String),
}

/// Pulls `reference` through `endpoints` (in order) and returns what the
/// image store records for it. `progress` gets one line per endpoint
/// that failed (containerd's "trying next host").
pub async fn pull(
    reference: &Reference,
    endpoints: &[Endpoint],
    credentials: &Credentials,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Found, String> {
    let mut last: Option<String> = None;
    for endpoint in endpoints {
        let mut session = match Session::new(endpoint, reference, credentials) {
            Ok(s) => s,
            Err(e) => {
                progress(format!("{}: {e}; trying next host", endpoint.url));
                last = Some(e);
                continue;
            }
        };
        let resolved = session.resolve().await;
        match resolved {
            Ok((target, body)) => {
                return session.fetch(target, body).await.map(|mut found| {
                    found.name = reference.name.clone();
                    found
                });
            }
            Err(Failure::NotFound) => {
                progress(format!(
                    "{}: {}: not found; trying next host",
                    endpoint.url, reference.name
                ));
            }
            Err(Failure::Other(e)) => {
                progress(format!("{}: {e}; trying next host", endpoint.url));
                last = Some(e);
            }
        }
    }
    let why = last.unwrap_or_else(|| format!("{}: not found", reference.name));
    Err(format!(
        "failed to resolve reference {:?}: {why}",
        reference.name
    ))
}

/// One endpoint's connection settings and authorization for one pull.
struct Session<'a> {
    endpoint: &'a Endpoint,
    tls: Arc<ClientConfig>,
    /// The repository path at this endpoint (after rewrites).
    repository: String,
    reference: &'a Reference,
    credentials: Option<(String, String)>,
    identity_token: Option<String>,
    authorization: Option<String>,
}

impl<'a> Session<'a> {
    fn new(
        endpoint: &'a Endpoint,
        reference: &'a Reference,
        credentials: &Credentials,
    ) -> Result<Self, String> {
        let auth = endpoint.config.auth.clone().unwrap_or_default();
        Ok(Session {
            tls: tls_config(&endpoint.config)?,
            repository: registries::rewrite(&reference.repository, &endpoint.rewrite),
            reference,
            credentials: credentials.0.clone().or_else(|| auth.basic()),
            identity_token: auth.identitytoken.filter(|t| !t.is_empty()),
            authorization: None,
            endpoint,
        })
    }

    fn url(&self, kind: &str, object: &str) -> String {
        let mut url = format!("{}/{}/{kind}/{object}", self.endpoint.url, self.repository);
        if let Some(ns) = &self.endpoint.mirror_of {
            url.push_str("?ns=");
            url.push_str(&encode(ns));
        }
        url
    }

    /// GETs `url` with the session's authorization; on a 401, answers the
    /// challenge once and retries; follows redirects.
    async fn get(&mut self, url: &str, accept: &str) -> Result<Response<Incoming>, String> {
        let mut resp = self.get_once(url, accept).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = header(&resp, "www-authenticate").unwrap_or_default();
            self.authorization = Some(self.authorize(&challenge).await?);
            resp = self.get_once(url, accept).await?;
        }
        Ok(resp)
    }

    async fn get_once(&self, url: &str, accept: &str) -> Result<Response<Incoming>, String> {
        let mut url = url.to_owned();
        let origin = authority_of(&url);
        for _ in 0..=MAX_REDIRECTS {
            let mut headers = vec![("accept", accept.to_owned())];
            // Credentials never follow a redirect to another host.
            if let Some(a) = &self.authorization
                && authority_of(&url) == origin
            {
                headers.push(("authorization", a.clone()));
            }
            let resp = send(&self.tls, Method::GET, &url, &headers, None).await?;
            if resp.status().is_redirection()
                && let Some(location) = header(&resp, "location")
            {
                url = resolve_location(&url, &location);
                continue;
            }
            return Ok(resp);
        }
        Err(format!(
            "GET {url:?}: stopped after {MAX_REDIRECTS} redirects"
        ))
    }

    /// The `Authorization` value that answers a challenge: Basic with the
    /// credentials, or a Bearer token from the token server (anonymous,
    /// with basic credentials, or with an identity token).
    async fn authorize(&self, challenge: &str) -> Result<String, String> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let (user, password) = self.credentials.as_ref().ok_or_else(|| {
                    format!(
                        "pull access denied, repository does not exist or may require authorization: {} asks for basic credentials and none are configured",
                        self.endpoint.url
                    )
                })?;
                Ok(format!(
                    "Basic {}",
                    B64.encode(format!("{user}:{password}"))
                ))
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or("failed to authorize: the bearer challenge has no realm")?;
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let service = params.get("service").cloned().unwrap_or_default();
                let token = self.fetch_token(realm, &service, &scope).await?;
                Ok(format!("Bearer {token}"))
            }
            _ => Err(format!(
                "failed to authorize: {} answered 401 Unauthorized without a usable challenge",
                self.endpoint.url
            )),
        }
    }

    async fn fetch_token(&self, realm: &str, service: &str, scope: &str) -> Result<String, String> {
        let (resp, what) = if let Some(refresh) = &self.identity_token {
            let form = format!(
                "grant_type=refresh_token&refresh_token={}&service={}&scope={}&client_id=containerd-client",
                encode(refresh),
                encode(service),
                encode(scope)
            );
            let headers = vec![(
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            )];
            let resp = send(
                &self.tls,
                Method::POST,
                realm,
                &headers,
                Some(Bytes::from(form)),
            )
            .await?;
            (resp, "oauth token")
        } else {
            let sep = if realm.contains('?') { '&' } else { '?' };
            let mut url = format!("{realm}{sep}scope={}", encode(scope));
            if !service.is_empty() {
                url.push_str(&format!("&service={}", encode(service)));
            }
            let mut headers = Vec::new();
            let what = match &self.credentials {
                Some((user, password)) => {
                    let basic = B64.encode(format!("{user}:{password}"));
                    headers.push(("authorization", format!("Basic {basic}")));
                    "token"
                }
                None => "anonymous token",
            };
            (
                send(&self.tls, Method::GET, &url, &headers, None).await?,
                what,
            )
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(format!(
                "failed to authorize: failed to fetch {what}: unexpected status from {} request to {}: {status}",
                if self.identity_token.is_some() {
                    "POST"
                } else {
                    "GET"
                },
                strip_query(realm)
            ));
        }
        let body = read_limited(resp, DOCUMENT_LIMIT).await?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("failed to authorize: the token answer is not JSON: {e}"))?;
        doc.get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| "failed to authorize: the token answer has no token".to_owned())
    }

    /// Resolves the reference to its manifest (or index) at this endpoint.
    async fn resolve(&mut self) -> Result<(Descriptor, Bytes), Failure> {
        let url = self.url("manifests", &self.reference.object);
        let resp = self.get(&url, ACCEPT).await.map_err(Failure::Other)?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Err(Failure::NotFound),
            s if !s.is_success() => {
                return Err(Failure::Other(format!(
                    "unexpected status from GET request to {}: {s}",
                    strip_query(&url)
                )));
            }
            _ => {}
        }
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let body = read_limited(resp, DOCUMENT_LIMIT)
            .await
            .map_err(Failure::Other)?;
        let digest = sha256(&body);
        if let Some(want) = &self.reference.digest
            && *want != digest
        {
            return Err(Failure::Other(format!(
                "{}: content digest {digest} does not match the reference's {want}",
                strip_query(&url)
            )));
        }
        let media_type = media_type(&content_type, &body);
        Ok((
            Descriptor {
                media_type,
                digest,
                size: body.len() as u64,
                annotations: None,
                platform: None,
            },
            body,
        ))
    }

    /// Fetches what the target needs (for an index, the host platform's
    /// manifest), verifying every digest; returns the image's record.
    async fn fetch(&mut self, target: Descriptor, body: Bytes) -> Result<Found, String> {
        let mut size = target.size;
        let mut platforms = Vec::new();
        let manifest_body = match target.media_type.as_str() {
            MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
                let index: IndexDoc = serde_json::from_slice(&body)
                    .map_err(|e| format!("{}: invalid index: {e}", target.digest))?;
                let host = images::host_platform();
                for m in &index.manifests {
                    if let Some(p) = &m.platform
                        && !platforms.contains(&p.format())
                    {
                        platforms.push(p.format());
                    }
                }
                let chosen = index
                    .manifests
                    .iter()
                    .find(|m| m.platform.as_ref().map(Platform::format).as_deref() == Some(&host))
                    .or_else(|| {
                        index.manifests.iter().find(|m| {
                            m.platform
                                .as_ref()
                                .is_some_and(|p| format!("{}/{}", p.os, p.architecture) == host)
                        })
                    })
                    .ok_or_else(|| {
                        format!(
                            "no match for platform in manifest {}: not found",
                            target.digest
                        )
                    })?
                    .clone();
                let child = self.document(&chosen, "manifests").await?;
                size += chosen.size;
                child
            }
            MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => body,
            other => {
                return Err(format!(
                    "{}: unsupported media type {other:?}",
                    target.digest
                ));
            }
        };
        let manifest: ManifestDoc =
            serde_json::from_slice(&manifest_body).map_err(|e| format!("invalid manifest: {e}"))?;
        let config = self.document(&manifest.config, "blobs").await?;
        size += manifest.config.size;
        if platforms.is_empty() {
            let doc: Value = serde_json::from_slice(&config)
                .map_err(|e| format!("invalid image config: {e}"))?;
            platforms.extend(images::config_platform(&doc).map(|p| p.format()));
        }
        for layer in &manifest.layers {
            self.blob(layer).await?;
            size += layer.size;
        }
        Ok(Found {
            name: String::new(),
            target,
            config_digest: manifest.config.digest.clone(),
            size,
            platforms,
        })
    }

    /// A small document (manifest or config), verified.
    async fn document(&mut self, desc: &Descriptor, kind: &str) -> Result<Bytes, String> {
        let url = self.url(kind, &desc.digest);
        let accept = if kind == "manifests" { ACCEPT } else { "*/*" };
        let resp = self.get(&url, accept).await?;
        if !resp.status().is_success() {
            return Err(format!(
                "failed to fetch {}: unexpected status from GET request to {}: {}",
                desc.digest,
                strip_query(&url),
                resp.status()
            ));
        }
        let body = read_limited(resp, DOCUMENT_LIMIT).await?;
        verify(desc, &sha256(&body), body.len() as u64)?;
        Ok(body)
    }

    /// A layer, streamed through the hash and dropped.
    async fn blob(&mut self, desc: &Descriptor) -> Result<(), String> {
        let url = self.url("blobs", &desc.digest);
        let resp = self.get(&url, "*/*").await?;
        if !resp.status().is_success() {
            return Err(format!(
                "failed to copy: httpReadSeeker: failed open: unexpected status from GET request to {}: {}",
                strip_query(&url),
                resp.status()
            ));
        }
        let mut body = resp.into_body();
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        while let Some(frame) = tokio::time::timeout(READ_TIMEOUT, body.frame())
            .await
            .map_err(|_| format!("reading {}: timed out", desc.digest))?
        {
            let frame = frame.map_err(|e| format!("reading {}: {e}", desc.digest))?;
            if let Some(data) = frame.data_ref() {
                hasher.update(data);
                read += data.len() as u64;
                if read > desc.size {
                    break;
                }
            }
        }
        verify(
            desc,
            &format!("sha256:{}", hex::encode(hasher.finalize())),
            read,
        )
    }
}

/// Runs a pull (or anything async) to its end on a small runtime of its
/// own, for the `ctr` and `crictl` processes.
pub fn block_on<F: std::future::Future>(work: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting runtime: {e}"))?;
    Ok(runtime.block_on(work))
}

/// Pulls `reference` and records it in the node's image store under
/// `names` (each pointing at the pulled target) with `labels`.
pub fn pull_and_store(
    data_dir: &std::path::Path,
    namespace: &str,
    reference: &Reference,
    endpoints: &[Endpoint],
    credentials: &Credentials,
    extra_names: &[String],
    labels: &BTreeMap<String, String>,
) -> Result<Vec<images::ImageRecord>, String> {
    // containerd logs each endpoint that failed before it tries the next
    // one in its own log, where k3s's docs send you for pull failures.
    let containerd_log = data_dir.join(CONTAINERD_LOG);
    let mut notes = |line: String| {
        use std::io::Write;
        let entry = crate::log::format_line(
            time::OffsetDateTime::now_utc(),
            crate::log::Level::Info,
            &line,
        );
        if let Some(dir) = containerd_log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&containerd_log)
        {
            let _ = writeln!(f, "{entry}");
        }
    };
    let found = block_on(pull(reference, endpoints, credentials, &mut notes))??;
    let mut all = vec![found.clone()];
    for name in extra_names {
        if *name != found.name {
            all.push(Found {
                name: name.clone(),
                ..found.clone()
            });
        }
    }
    images::ImageStore::new(data_dir)
        .import(namespace, &all, labels)
        .map_err(|e| format!("image store: {e}"))
}

/// containerd's check of fetched content.
fn verify(desc: &Descriptor, digest: &str, size: u64) -> Result<(), String> {
    if size != desc.size || digest != desc.digest {
        return Err(format!(
            "failed commit on ref \"{}\": unexpected commit digest {digest} (size {size}), expected {} (size {}): failed precondition",
            desc.digest, desc.digest, desc.size
        ));
    }
    Ok(())
}

/// The media type of a manifest answer: the `Content-Type`, else the
/// document's `mediaType`, else guessed from its shape.
fn media_type(content_type: &str, body: &[u8]) -> String {
    let known = [
        MEDIA_DOCKER_MANIFEST,
        MEDIA_DOCKER_LIST,
        MEDIA_OCI_MANIFEST,
        MEDIA_OCI_INDEX,
    ];
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if known.contains(&ct) {
        return ct.to_owned();
    }
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(mt) = doc.get("mediaType").and_then(Value::as_str) {
        return mt.to_owned();
    }
    if doc.get("manifests").is_some() {
        MEDIA_OCI_INDEX.to_owned()
    } else {
        MEDIA_OCI_MANIFEST.to_owned()
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// `scheme://authority` of an absolute URL.
fn authority_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    format!("{scheme}://{authority}")
}

/// A `Location` header resolved against the URL that answered it.
fn resolve_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else if location.starts_with('/') {
        format!("{}{location}", authority_of(base))
    } else {
        let dir = match strip_query(base).rfind('/') {
            Some(i) => &base[..=i],
            None => base,
        };
        format!("{dir}{location}")
    }
}

/// `Bearer realm="...",service="...",scope="..."` -> (`Bearer`, params).
fn parse_challenge(header: &str) -> (String, BTreeMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key, value);
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_owned(), params)
}

fn header(resp: &Response<Incoming>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads a body up to `limit` bytes, each piece within [`READ_TIMEOUT`].
async fn read_limited(resp: Response<Incoming>, limit: usize) -> Result<Bytes, String> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = tokio::time::timeout(READ_TIMEOUT, body.frame())
        .await
        .map_err(|_| "reading the response: timed out".to_owned())?
    {
        let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
        if let Some(data) = frame.data_ref() {
            out.extend_from_slice(data);
            if out.len() > limit {
                return Err(format!("the response is larger than {limit} bytes"));
            }
        }
    }
    Ok(Bytes::from(out))
}

/// TLS for an endpoint: the system's CAs plus `ca_file`, or any
/// certificate with `insecure_skip_verify`; a client certificate from
/// `cert_file`/`key_file`. Always the ring provider.
pub fn tls_config(config: &RegistryConfig) -> Result<Arc<ClientConfig>, String> {
    let tls = config.tls.clone().unwrap_or_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.insecure_skip_verify == Some(true) {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::client::AcceptAny(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if let Ok(system) = std::fs::read(SYSTEM_ROOTS) {
            for cert in CertificateDer::pem_slice_iter(&system).flatten() {
                let _ = roots.add(cert);
            }
        }
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("open {}: {e}", ca.display()))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: bad certificate: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: bad certificate: {e}", ca.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("{}: no certificate found", ca.display()));
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("open {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: bad certificate: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|_| format!("{}: no usable private key", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("cert_file and key_file must be given together".into()),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One request on a fresh connection (plain or TLS by the URL's scheme),
/// within [`REQUEST_TIMEOUT`] until the response headers.
async fn send(
    tls: &Arc<ClientConfig>,
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Bytes>,
) -> Result<Response<Incoming>, String> {
    let verb = method.as_str().to_owned();
    let shown = strip_query(url).to_owned();
    let request_failed = |e: String| {
        let verb = verb.chars().next().map_or(String::new(), |c| {
            c.to_string() + &verb[c.len_utf8()..].to_ascii_lowercase()
        });
        format!("failed to do request: {verb} {shown:?}: {e}")
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("invalid URL {shown:?}"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let endpoint = registries::EndpointUrl {
        scheme: scheme.to_ascii_lowercase(),
        authority: authority.to_owned(),
        base: String::new(),
    };
    let (host, port) = endpoint.host_port()?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("containerd/k3s-standin-", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let req = req
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| e.to_string())?;
    let work = async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| request_failed(dial_error(&host, port, &e)))?;
        if endpoint.scheme == "https" {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| request_failed(format!("bad server name: {e}")))?;
            let stream = TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| request_failed(tls_error(&e)))?;
            request(TokioIo::new(stream), req).await
        } else {
            request(TokioIo::new(tcp), req).await
        }
        .map_err(request_failed)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "failed to do request: {shown:?}: timed out after {REQUEST_TIMEOUT:?}"
        )),
    }
}

async fn request<T>(io: T, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// Go's wording of the TLS failures a registry setup meets most.
fn tls_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("InvalidContentType") {
        "http: server gave HTTP response to HTTPS client".into()
    } else if text.contains("UnknownIssuer") {
        "tls: failed to verify certificate: x509: certificate signed by unknown authority".into()
    } else if text.contains("NotValidForName") {
        format!(
            "tls: failed to verify certificate: x509: certificate is not valid for this name ({text})"
        )
    } else {
        format!("tls: {text}")
    }
}

/// Go's wording of a dial error (`dial tcp 127.0.0.1:1: connect:
/// connection refused`, `dial tcp: lookup registry.test: no such host`).
fn dial_error(host: &str, port: u16, e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("lookup address") {
        return format!("dial tcp: lookup {host}: no such host");
    }
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        _ => match text.find(" (os error") {
            Some(i) => text[..i].to_lowercase(),
            None => text,
        },
    };
    format!("dial tcp {host}:{port}: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.object.as_str()
            ),
            ("docker.io", "library/busybox", "latest")
        );
        let r = Reference::parse("registry.localhost:5000/team/app:v1").unwrap();
        assert_eq!(r.registry, "registry.localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.object, "v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("ghcr.io/o/app@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.object, d);
        assert_eq!(r.digest_name(&d), format!("ghcr.io/o/app@{d}"));
        assert!(Reference::parse("Bad:").is_err());
    }

    #[test]
    fn challenges_and_urls() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example.com/token");
        assert_eq!(p["service"], "registry.example.com");
        assert_eq!(p["scope"], "repository:a/b:pull");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (scheme.as_str(), p["realm"].as_str()),
            ("Basic", "Registry Realm")
        );
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        assert_eq!(
            resolve_location("http://h:1/v2/x/blobs/sha256:1?ns=a", "/blob/data"),
            "http://h:1/blob/data"
        );
        assert_eq!(
            resolve_location("http://h:1/v2/x", "https://cdn/b?sig=1"),
            "https://cdn/b?sig=1"
        );
        assert_eq!(
            media_type("", br#"{"manifests":[]}"#),
            MEDIA_OCI_INDEX.to_owned()
        );
        assert_eq!(
            media_type(&format!("{MEDIA_DOCKER_MANIFEST}; charset=utf-8"), b"{}"),
            MEDIA_DOCKER_MANIFEST.to_owned()
        );
    }
}
