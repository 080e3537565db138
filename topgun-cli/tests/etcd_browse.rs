//! `topgun etcd browse` in a real browser: Debian's chromium, headless,
//! driven through the DevTools protocol (a small websocket client below),
//! against a real 3-member etcd with mutual TLS on loopback holding a
//! stand-in cluster's keys: Nodes under /registry/minions/ (one in k3s's
//! protobuf envelope, one as JSON) and 10,000 ConfigMaps.
//!
//! Needs `etcd` (`cargo xtask setup`) and chromium: `TOPGUN_CHROMIUM` (what
//! `cargo xtask test` sets) or /usr/bin/chromium. Without chromium the test
//! says so and passes, except under CI (`CI=true`) or when
//! `TOPGUN_CHROMIUM` names it: then it fails.
//!
//! `TOPGUN_BROWSE_SCREENSHOT=FILE` keeps the page's screenshot (docs/etcd-browse.png);
//! `TOPGUN_BROWSE_BIN=PATH` runs another `topgun` build (for the figures of a
//! release build).

// The test reports its figures (load time, memory) on stderr.
#![allow(clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use topgun_etcd::local::LocalCluster;
use topgun_etcd::{Checker, EtcdClusterSpec};

/// How many ConfigMaps the test writes: 10,000, or `TOPGUN_BROWSE_KEYS`
/// (at least 2,000) to measure a larger store.
fn configmaps() -> usize {
    std::env::var("TOPGUN_BROWSE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
        .max(2000)
}

fn chromium() -> Option<PathBuf> {
    // `cargo xtask test` names it: then it must be there.
    let named = std::env::var_os("TOPGUN_CHROMIUM").map(PathBuf::from);
    let path = named
        .clone()
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci && named.is_none(),
        "chromium not found at {}: install it with `cargo xtask setup`",
        path.display()
    );
    eprintln!(
        "SKIPPED: chromium not found at {}; `cargo xtask setup` installs it",
        path.display()
    );
    None
}

// ---- the etcd data -------------------------------------------------------

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited protobuf field.
fn field(number: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((number << 3) | 2, &mut out);
    varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

/// A Node as k3s stores it: `k8s\0`, then runtime.Unknown {1: TypeMeta
/// {1: apiVersion, 2: kind}, 2: raw Node {1: ObjectMeta {1: name, ...},
/// 2: spec}, 4: contentType}.
fn node_protobuf(name: &str, generation: u64) -> Vec<u8> {
    let mut meta = field(1, name.as_bytes());
    meta.extend(field(5, b"7c1e7f3a-0000-4000-8000-000000000001")); // uid
    meta.push(7 << 3); // resourceVersion-like varint field
    varint(generation, &mut meta);
    let mut node = field(1, &meta);
    node.extend(field(2, &field(1, b"10.42.0.0/24"))); // spec.podCIDR
    let mut type_meta = field(1, b"v1");
    type_meta.extend(field(2, b"Node"));
    let mut unknown = field(1, &type_meta);
    unknown.extend(field(2, &node));
    unknown.extend(field(4, b"application/vnd.kubernetes.protobuf"));
    let mut value = b"k8s\0".to_vec();
    value.extend(unknown);
    value
}

fn node_json(name: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "node-role.kubernetes.io/agent": "true"},
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": "172.28.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.31.4+k3s-standin"},
        },
    })
    .to_string()
}

fn configmap_json(i: usize) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("cm-{i:05}"), "namespace": "default"},
        "data": {"index": i.to_string(), "note": "x".repeat(160)},
    })
    .to_string()
}

async fn populate(checker: &Checker, configmaps: usize) {
    checker
        .put(
            "/registry/minions/topgun-demo-agent-0",
            node_json("topgun-demo-agent-0"),
        )
        .await
        .unwrap();
    for generation in 1..=3 {
        checker
            .put(
                "/registry/minions/topgun-demo-server-0",
                node_protobuf("topgun-demo-server-0", generation),
            )
            .await
            .unwrap();
    }
    checker
        .put(
            "/registry/namespaces/default",
            node_json("default").replace("Node", "Namespace"),
        )
        .await
        .unwrap();
    checker
        .put("/topgun/note", "written by the browse test\n")
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..64 {
        let checker = checker.clone();
        tasks.spawn(async move {
            for i in (worker..configmaps).step_by(64) {
                let key = format!("/registry/configmaps/default/cm-{i:05}");
                checker.put(&key, configmap_json(i)).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

// ---- plain HTTP, for the refusals -------------------------------------------

/// One HTTP/1.1 request; returns the status, the headers and the body.
fn http(
    addr: &str,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{request_line} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    // Read the head, then Content-Length bytes (chromium keeps the
    // connection open whatever the request says).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            stream.read_exact(&mut body).unwrap();
        }
        None => {
            stream.read_to_end(&mut body).unwrap();
        }
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

// ---- a minimal DevTools client: websocket frames over TCP --------------------

struct Cdp {
    stream: TcpStream,
    next_id: u64,
    /// The messages of the dialogs the page opened (and that were accepted).
    dialogs: Vec<String>,
}

impl Cdp {
    fn connect(ws_url: &str) -> Cdp {
        let rest = ws_url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dG9wZ3VuLWJyb3dzZS10ZXN0\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "websocket refused: {head}"
        );
        Cdp {
            stream,
            next_id: 0,
            dialogs: Vec::new(),
        }
    }

    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask: [u8; 4] = rand_mask();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    fn recv(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).unwrap();
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).unwrap();
            match opcode {
                0x8 => panic!("the browser closed the DevTools connection"),
                0x9 | 0xa => continue,
                _ => message.extend(payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"id": id, "method": method, "params": params}).to_string());
        loop {
            let msg: Value = serde_json::from_str(&self.recv()).unwrap();
            if msg["id"] == id {
                assert!(msg.get("error").is_none(), "{method}: {msg}");
                return msg["result"].clone();
            }
            // The page's confirmations: the person says yes (the answer to
            // this request is skipped like any other id).
            if msg["method"] == "Page.javascriptDialogOpening" {
                self.dialogs
                    .push(msg["params"]["message"].as_str().unwrap_or("").to_owned());
                self.next_id += 1;
                let accept = json!({"id": self.next_id, "method": "Page.handleJavaScriptDialog",
                    "params": {"accept": true}});
                self.send(&accept.to_string());
            }
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy; returns its value.
    fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expr);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; page: {}",
                self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn rand_mask() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos.to_le_bytes()
}

/// Kills a child process when dropped (the test's browser and server).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromium(bin: &PathBuf, profile: &std::path::Path) -> (KillOnDrop, String) {
    let mut child = Command::new(bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1280,860",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let child = KillOnDrop(child);
    let browser_url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium prints its DevTools address");
    let host = browser_url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    // The first page's own websocket.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) = http(&host, "GET /json/list", &[], "");
        let pages: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if let Some(url) = pages
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["type"] == "page")
            .and_then(|p| p["webSocketDebuggerUrl"].as_str())
        {
            return (child, url.to_owned());
        }
        assert!(Instant::now() < deadline, "chromium lists no page: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Starts `topgun etcd browse` on `cluster` with `extra` flags; returns
/// it, the URL it printed, its address and its token.
fn browse(cluster: &LocalCluster, extra: &[&str]) -> (KillOnDrop, String, String, String) {
    let files = cluster.client_files().unwrap();
    // TOPGUN_BROWSE_BIN: measure another build (the release binary).
    let bin = std::env::var_os("TOPGUN_BROWSE_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_topgun").into());
    let mut server = Command::new(bin);
    server
        .env_remove("TOPGUN_LOG")
        .args([
            "etcd",
            "browse",
            "--endpoints",
            &cluster.endpoints().join(","),
        ])
        .arg("--cacert")
        .arg(&files.ca)
        .arg("--cert")
        .arg(&files.cert)
        .arg("--key")
        .arg(&files.key)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut server = KillOnDrop(server.spawn().unwrap());
    let mut url = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();
    let rest = url.strip_prefix("http://").expect("a URL on stdout");
    let (addr, token_path) = rest.split_at(rest.find('/').unwrap());
    assert!(addr.starts_with("127.0.0.1:"), "{url}");
    let token = token_path.trim_matches('/').to_owned();
    assert_eq!(token.len(), 32, "{url}");
    (server, url.clone(), addr.to_owned(), token)
}

#[test]
fn browse_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let test_started = Instant::now();
    let configmaps = configmaps();
    let plan = EtcdClusterSpec::new("cli-browse")
        .with_members(3)
        .with_tls(true)
        .with_timing(Duration::from_millis(50), Duration::from_millis(500))
        .plan()
        .unwrap();
    let mut cluster = LocalCluster::start(&plan).expect(
        "an etcd binary (install etcd-server with `cargo xtask setup`, or set TOPGUN_ETCD_BIN)",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(cluster.wait_healthy(Duration::from_secs(20)))
        .expect("the cluster starts");
    let filled = Instant::now();
    rt.block_on(async {
        let checker = Checker::connect(&cluster.endpoints(), &cluster.client_config())
            .await
            .unwrap();
        populate(&checker, configmaps).await;
    });
    eprintln!("put {} keys in {:?}", configmaps + 4, filled.elapsed());

    // topgun etcd browse, read-only, on a free loopback port.
    let (mut server, url, addr, token) = browse(&cluster, &[]);
    let pid = server.0.id();

    // Refusals, over plain HTTP: no token, a wrong token, a foreign Host
    // (DNS rebinding), a foreign Origin, a write while read-only.
    let (code, _, body) = http(&addr, "GET /", &[], "");
    assert_eq!(code, 403, "{body}");
    let (code, _, _) = http(&addr, "GET /api/status", &[], "");
    assert_eq!(code, 403);
    let wrong = "0".repeat(32);
    let (code, _, _) = http(&addr, &format!("GET /{wrong}/api/status"), &[], "");
    assert_eq!(code, 403);
    let status = format!("GET /{token}/api/status");
    let evil_host = format!("evil.example:{}", addr.rsplit(':').next().unwrap());
    let (code, _, _) = http(&addr, &status, &[("Host", &evil_host)], "");
    assert_eq!(code, 403);
    let (code, _, _) = http(&addr, &status, &[("Origin", "http://evil.example")], "");
    assert_eq!(code, 403);
    let (code, _, body) = http(
        &addr,
        &format!("POST /{token}/api/put"),
        &[("Content-Type", "application/json")],
        r#"{"key":"/x","value":"y"}"#,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let (code, head, body) = http(&addr, &status, &[], "");
    assert_eq!(code, 200, "{body}");
    assert!(!head.contains("access-control-allow"), "{head}");
    let (code, head, _) = http(&addr, &format!("GET /{token}/"), &[], "");
    assert_eq!(code, 200);
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );

    // The page in chromium.
    let profile = tempfile::tempdir().unwrap();
    let (_browser, page_ws) = start_chromium(&chromium, profile.path());
    let mut cdp = Cdp::connect(&page_ws);
    cdp.call("Page.enable", json!({}));
    let loading = Instant::now();
    cdp.call("Page.navigate", json!({"url": url}));
    cdp.wait_for(
        "the key tree",
        "document.body && document.body.dataset.ready",
        Duration::from_secs(60),
    );
    let load_time = loading.elapsed();
    let in_page_ms = cdp.eval("Number(document.body.dataset.loadMs)");

    // The tree opened / and /registry/ by itself, with counts per prefix.
    let count = |cdp: &mut Cdp, path: &str| {
        cdp.eval(&format!(
            "(() => {{ const n = document.querySelector('[data-path=\"{path}\"] .count'); return n ? n.dataset.keys : null; }})()"
        ))
    };
    assert_eq!(count(&mut cdp, "/registry/minions/"), "2");
    assert_eq!(
        count(&mut cdp, "/registry/configmaps/"),
        configmaps.to_string()
    );
    assert_eq!(
        cdp.eval("document.getElementById('total').textContent.split(' ')[0]"),
        (configmaps + 4).to_string()
    );
    // Only the opened levels are in the page, not 10k keys.
    let rows = cdp.eval("document.querySelectorAll('.node').length");
    assert!(rows.as_u64().unwrap() < 20, "{rows}");

    // Open /registry/minions/ and the protobuf Node.
    cdp.eval("document.querySelector('[data-path=\"/registry/minions/\"]').click()");
    let server_key = "/registry/minions/topgun-demo-server-0";
    cdp.wait_for(
        "the minions level",
        &format!("!!document.querySelector('[data-path=\"{server_key}\"]')"),
        Duration::from_secs(20),
    );
    cdp.eval(&format!(
        "document.querySelector('[data-path=\"{server_key}\"]').click()"
    ));
    let kind = cdp.wait_for(
        "the decoded Node",
        "(() => { const o = document.getElementById('object'); return o ? o.dataset.kind : null; })()",
        Duration::from_secs(20),
    );
    assert_eq!(kind, "Node");
    assert_eq!(
        cdp.eval("document.getElementById('object').dataset.name"),
        "topgun-demo-server-0"
    );
    assert_eq!(
        cdp.eval("document.getElementById('format').dataset.format"),
        "kubernetes"
    );
    let hex = cdp.eval("document.getElementById('value-hex').textContent");
    assert!(
        hex.as_str().unwrap().starts_with("00000000  6b38 7300"),
        "{hex}"
    );
    // Three puts: the current revision and two earlier ones.
    assert_eq!(
        cdp.eval("document.querySelectorAll('#history li').length"),
        3
    );

    // A level of 10,000 keys comes a page (1000) at a time.
    let cms = "/registry/configmaps/default/";
    cdp.eval("document.querySelector('[data-path=\"/registry/configmaps/\"]').click()");
    cdp.wait_for(
        "the configmaps level",
        &format!("!!document.querySelector('[data-path=\"{cms}\"]')"),
        Duration::from_secs(20),
    );
    cdp.eval(&format!(
        "document.querySelector('[data-path=\"{cms}\"]').click()"
    ));
    let pages = format!("document.querySelectorAll('[data-path^=\"{cms}cm-\"]').length");
    cdp.wait_for(
        "the first page",
        &format!("{pages} === 1000"),
        Duration::from_secs(20),
    );
    cdp.eval(&format!(
        "document.querySelector('[data-more=\"{cms}\"]').click()"
    ));
    cdp.wait_for(
        "the second page",
        &format!("{pages} === 2000"),
        Duration::from_secs(20),
    );
    // Close it again for the screenshot.
    cdp.eval("document.querySelector('[data-path=\"/registry/configmaps/\"]').click()");

    // The live verdict, and a screenshot of the page as it is now.
    cdp.wait_for(
        "the Healthy verdict",
        "document.getElementById('verdict').textContent === 'Healthy'",
        Duration::from_secs(20),
    );
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    if let Some(path) = std::env::var_os("TOPGUN_BROWSE_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }
    let rss = memory_kib(pid, "VmRSS:");
    let hwm = memory_kib(pid, "VmHWM:");

    // Kill a member: the page turns Degraded by itself.
    cluster.kill(2).unwrap();
    let killed = Instant::now();
    cdp.wait_for(
        "the Degraded verdict",
        "document.getElementById('verdict').textContent === 'Degraded'",
        Duration::from_secs(20),
    );
    let degraded_after = killed.elapsed();
    assert_eq!(
        cdp.eval("document.querySelectorAll('#members tr.down').length"),
        1
    );

    // The browser without the token is refused.
    cdp.call("Page.navigate", json!({"url": format!("http://{addr}/")}));
    cdp.wait_for(
        "the refusal",
        "document.body && document.body.innerText.includes('forbidden')",
        Duration::from_secs(20),
    );

    // Ctrl-C stops the server cleanly.
    let interrupted = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "topgun etcd browse ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    server
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(exit.success(), "{exit}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");

    // With --write, puts and deletes go through (same-origin JSON only).
    let (_writer, write_url, addr, token) = browse(&cluster, &["--write"]);
    let put = format!("POST /{token}/api/put");
    let json_type = ("Content-Type", "application/json");
    let (code, _, body) = http(
        &addr,
        &put,
        &[json_type],
        r#"{"key":"/topgun/written","value":"hello"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(
        &addr,
        &put,
        &[("Content-Type", "text/plain")],
        r#"{"key":"/x"}"#,
    );
    assert_eq!(code, 415, "{body}");
    let (code, _, _) = http(
        &addr,
        &put,
        &[json_type, ("Origin", "http://evil.example")],
        r#"{"key":"/x"}"#,
    );
    assert_eq!(code, 403);
    let (code, _, body) = http(
        &addr,
        &format!("GET /{token}/api/value?key=%2Ftopgun%2Fwritten"),
        &[],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        view["current"]["decoded"],
        json!({"format": "text", "text": "hello"})
    );
    let (code, _, body) = http(
        &addr,
        &format!("POST /{token}/api/delete"),
        &[json_type],
        r#"{"key":"/topgun/written"}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""deleted":1"#), "{body}");

    // And in the page: put through the form, then delete, each confirmed.
    cdp.call("Page.navigate", json!({"url": write_url}));
    cdp.wait_for(
        "the writable page",
        "document.body && document.body.dataset.ready && !document.getElementById('put').hidden",
        Duration::from_secs(60),
    );
    cdp.eval(
        "document.getElementById('put-key').value = '/topgun/from-the-page'; \
         document.getElementById('put-value').value = 'hello from the page'; \
         document.querySelector('#put button').click()",
    );
    cdp.wait_for(
        "the written key",
        "(() => { const t = document.getElementById('value-text'); return t && t.textContent === 'hello from the page'; })()",
        Duration::from_secs(20),
    );
    cdp.eval(
        "[...document.querySelectorAll('#value button')].find(b => b.textContent === 'Delete key').click()",
    );
    cdp.wait_for(
        "the deleted key",
        "document.getElementById('value').textContent.includes('does not exist')",
        Duration::from_secs(20),
    );
    assert_eq!(
        cdp.dialogs,
        [
            "Put /topgun/from-the-page (19 bytes) into etcd?",
            "Delete /topgun/from-the-page from etcd?"
        ]
    );

    eprintln!(
        "browse figures: {} keys; page load to tree {load_time:?} (in page {in_page_ms} ms); \
         topgun RSS {rss} KiB, peak {hwm} KiB; screenshot {} bytes; Degraded shown {degraded_after:?} after the kill; test {:?}",
        configmaps + 4,
        png.len(),
        test_started.elapsed()
    );
}
