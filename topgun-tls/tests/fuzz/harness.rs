//! The bounded fuzzing harness shared by every crate's `tests/fuzz.rs`: this
//! one file, which topgun-etcd's and topgun-core's fuzz tests include by
//! path.
//!
//! A target is a proptest strategy and a property. How long it runs:
//!
//! - by default a small number of cases (the target's own default, or
//!   `PROPTEST_CASES`), so `cargo test` stays fast;
//! - with `TOPGUN_FUZZ_SECS=N`, fresh randomly seeded batches until `N`
//!   seconds have passed (what `cargo xtask fuzz` sets).
//!
//! Every case must finish within [`CASE_LIMIT`] (`TOPGUN_FUZZ_CASE_MS`
//! overrides it). A failure is shrunk to a minimal input and reported with
//! it; make that input a named `#[test]` next to the code it concerns.
//!
//! Each target prints one line to stderr, which `cargo xtask fuzz` reads:
//! `fuzz-result target=NAME cases=N secs=S max_case_ms=M status=ok|FAILED`.

#![allow(dead_code, clippy::print_stderr)]

use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// The environment variable with the time budget per target, in seconds.
pub const SECS_ENV: &str = "TOPGUN_FUZZ_SECS";
/// The environment variable that overrides [`CASE_LIMIT`], in milliseconds.
pub const CASE_MS_ENV: &str = "TOPGUN_FUZZ_CASE_MS";
/// The longest one case may take (debug build, a loaded machine).
pub const CASE_LIMIT: Duration = Duration::from_secs(2);

/// Pieces of YAML syntax that the YAML fuzz targets (specs, kubeconfigs)
/// splice into documents.
pub const YAML_BITS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "\n",
    "\n  ",
    "\n    ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "|",
    ">",
    "~",
    "null",
    "true",
    "1",
    "-1",
    "1e400",
    "0x10",
    "---\n",
    "...\n",
    "? ",
    "%YAML 1.2\n",
    "\t",
    "\\",
    "\u{feff}",
    "<<: ",
];

/// Cases per batch in timed mode (each batch has a fresh random seed).
const BATCH: u32 = 256;

/// The result of a property: `Ok(())` or a failure with a reason.
pub type Outcome = Result<(), TestCaseError>;

/// Fails the case with `msg` unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(proptest::test_runner::TestCaseError::fail(format!($($msg)+)));
        }
    };
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `property` on values of `strategy`: `default_cases` cases (or
/// `PROPTEST_CASES`), or for `TOPGUN_FUZZ_SECS` seconds. Panics with the
/// minimal failing input when the property fails, panics or is too slow.
pub fn fuzz<S>(name: &str, default_cases: u32, strategy: S, property: impl Fn(S::Value) -> Outcome)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = env_number::<u32>("PROPTEST_CASES").unwrap_or(default_cases);
    let budget = env_number::<f64>(SECS_ENV)
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let limit = env_number::<u64>(CASE_MS_ENV)
        .map(Duration::from_millis)
        .unwrap_or(CASE_LIMIT);
    let ran = AtomicU64::new(0);
    let slowest = Mutex::new(Duration::ZERO);
    let timed = |value: S::Value| -> Outcome {
        ran.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let outcome = property(value);
        let took = start.elapsed();
        let mut max = slowest.lock().unwrap_or_else(|e| e.into_inner());
        *max = (*max).max(took);
        drop(max);
        outcome?;
        if took > limit {
            return Err(TestCaseError::fail(format!(
                "one case took {} ms, over the {} ms limit",
                took.as_millis(),
                limit.as_millis()
            )));
        }
        Ok(())
    };
    let started = Instant::now();
    let config = |cases: u32| Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        max_shrink_time: 30_000,
        ..Config::default()
    };
    let mut result = Ok(());
    match budget {
        None => result = TestRunner::new(config(cases)).run(&strategy, timed),
        Some(budget) => {
            while started.elapsed() < budget {
                result = TestRunner::new(config(BATCH)).run(&strategy, timed);
                if result.is_err() {
                    break;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let max_ms = slowest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_millis();
    let cases_run = ran.load(Ordering::Relaxed);
    let status = if result.is_ok() { "ok" } else { "FAILED" };
    eprintln!(
        "fuzz-result target={name} cases={cases_run} secs={secs:.1} max_case_ms={max_ms} status={status}"
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => {
            panic!("fuzz target {name} failed: {reason}\nminimal input: {input:?}")
        }
        Err(TestError::Abort(reason)) => panic!("fuzz target {name} aborted: {reason}"),
    }
}

/// A private key in PEM, with its body lines: inputs that embed one must
/// never have it shown in an error message.
#[derive(Debug, Clone)]
pub struct PemKey {
    /// The whole PEM text.
    pub pem: String,
    /// The base64 lines between the markers.
    pub body: Vec<String>,
}

impl PemKey {
    /// A key from PEM text.
    pub fn from_pem(pem: &str) -> Self {
        let body = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .map(str::to_owned)
            .collect();
        PemKey {
            pem: pem.to_owned(),
            body,
        }
    }

    /// The first window of 12 characters of the key's body found in
    /// `message`, if any (raw or with newlines escaped: a message may quote
    /// the key with `{:?}`).
    pub fn shown_in(&self, message: &str) -> Option<String> {
        let mut squashed: String = message
            .replace("\\r", "")
            .replace("\\n", "")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        // Bytes printed as a list (`[77, 73, ...]`, as `{:?}` prints a
        // `Vec<u8>`) are text too.
        for list in message.split('[').skip(1) {
            let list = list.split(']').next().unwrap_or_default();
            let bytes: Vec<u8> = list
                .split(',')
                .filter_map(|n| n.trim().parse::<u8>().ok())
                .collect();
            if bytes.len() > 12 {
                squashed.extend(
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .filter(|c| !c.is_whitespace()),
                );
            }
        }
        let body: String = self.body.concat();
        let chars: Vec<char> = body.chars().collect();
        chars
            .windows(12)
            .map(|w| w.iter().collect::<String>())
            .find(|w| message.contains(w.as_str()) || squashed.contains(w.as_str()))
    }
}

/// Fails the case when `message` shows any part of `key`.
pub fn no_key_in(key: &PemKey, message: &str) -> Outcome {
    if let Some(part) = key.shown_in(message) {
        return Err(TestCaseError::fail(format!(
            "a private key is shown in the message (…{part}…): {message}"
        )));
    }
    Ok(())
}

/// Random private keys in PEM form: the usual labels, a base64 body of a
/// realistic size in 64-character lines, LF or CRLF line ends.
pub fn pem_key() -> impl Strategy<Value = PemKey> {
    use proptest::prelude::*;
    let label = prop_oneof![
        Just("PRIVATE KEY"),
        Just("EC PRIVATE KEY"),
        Just("RSA PRIVATE KEY"),
        Just("ENCRYPTED PRIVATE KEY"),
    ];
    let body = proptest::collection::vec(any::<u8>(), 48..400);
    (label, body, any::<bool>()).prop_map(|(label, bytes, crlf)| {
        let b64 = base64_encode(&bytes);
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut pem = format!("-----BEGIN {label}-----{nl}");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push_str(nl);
        }
        pem.push_str(&format!("-----END {label}-----{nl}"));
        PemKey::from_pem(&pem)
    })
}

/// Standard base64 with padding (the harness has no base64 dependency).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Ways to place a PEM key into an input: alone, as a value after a prefix,
/// inside quotes, on one line (newlines as spaces or as `\n` escapes), in
/// the middle of other text.
pub fn embed_key(
    text: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = (String, PemKey)> {
    use proptest::prelude::*;
    (
        text.clone(),
        text,
        pem_key(),
        0..6u8,
        prop_oneof![Just(""), Just("\""), Just("'"), Just("\\\"")],
    )
        .prop_map(|(before, after, key, how, quote)| {
            let pem = match how {
                0 => key.pem.clone(),
                1 => key.pem.replace("\r\n", " ").replace('\n', " "),
                2 => key.pem.replace("\r\n", "\\n").replace('\n', "\\n"),
                3 => key.pem.trim_end().to_owned(),
                4 => key.pem.replace("\r\n", "").replace('\n', ""),
                _ => key
                    .pem
                    .replace("-----\n", "-----")
                    .replace("\n-----", "-----"),
            };
            (format!("{before}{quote}{pem}{quote}{after}"), key)
        })
}

/// Arbitrary text of up to `max` characters: mostly ASCII with the
/// punctuation parsers split on, sometimes any Unicode.
pub fn noise(max: usize) -> impl Strategy<Value = String> + Clone {
    use proptest::prelude::*;
    let ascii = proptest::collection::vec(
        prop_oneof![
            8 => proptest::char::range(' ', '~'),
            1 => Just('\n'),
            1 => Just('\t'),
        ],
        0..=max,
    )
    .prop_map(String::from_iter);
    let any_char = proptest::collection::vec(any::<char>(), 0..=max).prop_map(String::from_iter);
    prop_oneof![4 => ascii, 1 => any_char]
}

/// Joins `max` tokens drawn from `vocabulary` (with some noise), the
/// general shape of a grammar-aware generator.
pub fn tokens(
    vocabulary: &'static [&'static str],
    max: usize,
) -> impl Strategy<Value = String> + Clone {
    use proptest::prelude::*;
    let token = prop_oneof![
        6 => proptest::sample::select(vocabulary).prop_map(str::to_owned),
        1 => noise(3),
        1 => (0u64..70_000).prop_map(|n| n.to_string()),
    ];
    proptest::collection::vec(token, 0..=max).prop_map(|t| t.concat())
}

/// Applies up to a few byte-level edits (insert, delete, replace, duplicate)
/// to `text`, at character boundaries.
pub fn mutate(
    text: impl Strategy<Value = String> + Clone,
    inserts: &'static [&'static str],
) -> impl Strategy<Value = String> + Clone {
    use proptest::prelude::*;
    let edit = (
        0..4u8,
        any::<proptest::sample::Index>(),
        any::<proptest::sample::Index>(),
        proptest::sample::select(inserts),
    );
    (text, proptest::collection::vec(edit, 0..4)).prop_map(|(text, edits)| {
        let mut chars: Vec<char> = text.chars().collect();
        for (kind, at, len, insert) in edits {
            let pos = if chars.is_empty() {
                0
            } else {
                at.index(chars.len() + 1)
            };
            match kind {
                0 => {
                    let tail = chars.split_off(pos);
                    chars.extend(insert.chars());
                    chars.extend(tail);
                }
                1 if !chars.is_empty() => {
                    let pos = pos.min(chars.len() - 1);
                    let n = len.index(chars.len() - pos).clamp(1, 8);
                    chars.drain(pos..pos + n);
                }
                2 if !chars.is_empty() => {
                    let pos = pos.min(chars.len() - 1);
                    chars[pos] = insert.chars().next().unwrap_or('x');
                }
                _ if !chars.is_empty() => {
                    let pos = pos.min(chars.len() - 1);
                    let n = len.index(chars.len() - pos).clamp(1, 16);
                    let copy: Vec<char> = chars[pos..pos + n].to_vec();
                    let tail = chars.split_off(pos);
                    chars.extend(copy);
                    chars.extend(tail);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    })
}
