//! `k3s ctr`: the slice of containerd's `ctr` that deals with images
//! (`images import`, `images ls`, `images rm`), run as its own process as
//! with k3s (`docker exec NODE k3s ctr images import FILE`).
//!
//! k3s's `ctr` talks to containerd's socket; the stand-in has no
//! containerd, so `ctr` works on the image records under the node's data
//! dir (`$K3S_DATA_DIR`, default `/var/lib/rancher/k3s`), which the running
//! node re-reads on every heartbeat.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::config::DEFAULT_DATA_DIR;
use crate::images::{self, ImageRecord, ImageStore};

const USAGE: &str = "NAME:
   ctr - containerd CLI (k3s stand-in: images only)

USAGE:
   k3s ctr [global options] images|image|i command [command options] [arguments...]

COMMANDS:
   images import [--base-name NAME] [--label K=V] [--no-unpack] FILE|-   import a `docker save` tarball
   images pull [--user USER[:PASSWORD]] [--plain-http] [--skip-verify] [--hosts-dir DIR] [--label K=V] REF
                                                                         pull from a registry (Registry API v2)
   images ls|list [-q]                                                   list images
   images rm|remove|delete|del NAME...                                   remove image names

GLOBAL OPTIONS:
   --namespace value, -n value  namespace to use (default \"k8s.io\") [$CONTAINERD_NAMESPACE]
   --address value, -a value    accepted and ignored (the stand-in has no containerd socket)
";

/// An error that ends `ctr` with status 1 and `ctr: <message>`.
#[derive(Debug, PartialEq, Eq)]
pub struct CtrError(pub String);

impl<T: Into<String>> From<T> for CtrError {
    fn from(s: T) -> Self {
        CtrError(s.into())
    }
}

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `--help` anywhere.
    Help,
    /// `images import`.
    Import {
        /// Namespace.
        namespace: String,
        /// The tarball, or `-` for stdin.
        file: String,
        /// `--base-name`.
        base_name: Option<String>,
        /// `--label k=v`.
        labels: BTreeMap<String, String>,
        /// `--no-unpack`.
        no_unpack: bool,
    },
    /// `images pull`.
    Pull {
        /// Namespace.
        namespace: String,
        /// The reference, as given.
        reference: String,
        /// `--user`.
        credentials: crate::pull::Credentials,
        /// `--plain-http`.
        plain_http: bool,
        /// `--hosts-dir`: use the node's registry configuration.
        hosts_dir: bool,
        /// `--skip-verify`, `--tlscacert`, `--tlscert`, `--tlskey`.
        tls: crate::registries::Tls,
        /// `--label k=v`.
        labels: BTreeMap<String, String>,
    },
    /// `images ls`.
    List {
        /// Namespace.
        namespace: String,
        /// `-q`.
        quiet: bool,
    },
    /// `images rm`.
    Remove {
        /// Namespace.
        namespace: String,
        /// Names to remove.
        names: Vec<String>,
    },
}

/// Flags as given: `(name, value)` in order.
type Flags = Vec<(String, String)>;

/// Splits `--flag=value` / `-flag value` flags (up to the first argument
/// that is not a flag, as urfave/cli v1 does) from the arguments.
/// `takes_value` says which flags take a value.
fn split_flags(
    args: &[String],
    takes_value: &dyn Fn(&str) -> Option<bool>,
) -> Result<(Flags, Vec<String>), CtrError> {
    let mut flags = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            i += 1;
            break;
        }
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            break;
        };
        if stripped.is_empty() {
            // A lone `-` is an argument (stdin).
            break;
        }
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (stripped, None),
        };
        i += 1;
        let value = match (takes_value(name), inline) {
            (None, _) => {
                return Err(format!("flag provided but not defined: -{name}").into());
            }
            (Some(_), Some(v)) => v,
            (Some(true), None) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                i += 1;
                v.clone()
            }
            (Some(false), None) => "true".into(),
        };
        flags.push((name.to_owned(), value));
    }
    Ok((flags, args[i..].to_vec()))
}

fn is_help(flags: &[(String, String)]) -> bool {
    flags.iter().any(|(n, _)| n == "help" || n == "h")
}

/// Parses `k3s ctr ...` (the arguments after `ctr`).
pub fn parse(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, CtrError> {
    let global = |name: &str| match name {
        "namespace" | "n" | "address" | "a" | "timeout" | "connect-timeout" => Some(true),
        "debug" | "help" | "h" => Some(false),
        _ => None,
    };
    let (flags, rest) = split_flags(args, &global)?;
    if is_help(&flags) || rest.is_empty() {
        return Ok(Invocation::Help);
    }
    let namespace = flags
        .iter()
        .rev()
        .find(|(n, _)| n == "namespace" || n == "n")
        .map(|(_, v)| v.clone())
        .or_else(|| env("CONTAINERD_NAMESPACE").filter(|v| !v.is_empty()))
        .unwrap_or_else(|| images::K8S_NAMESPACE.to_owned());
    if !images::valid_namespace(&namespace) {
        return Err(format!("namespace {namespace:?}: invalid namespace name").into());
    }
    match rest[0].as_str() {
        "images" | "image" | "i" => {}
        other => {
            return Err(format!(
                "'ctr {other}' is not emulated by the k3s stand-in (only 'ctr images import|pull|ls|rm' are)"
            )
            .into());
        }
    }
    let Some(command) = rest.get(1) else {
        return Ok(Invocation::Help);
    };
    let args = &rest[2..];
    match command.as_str() {
        "import" => {
            let import_flags = |name: &str| match name {
                "base-name" | "index-name" | "platform" | "label" | "snapshotter" => Some(true),
                "digests"
                | "skip-digest-for-named"
                | "all-platforms"
                | "no-unpack"
                | "compress-blobs"
                | "local"
                | "discard-unpacked-layers"
                | "help"
                | "h" => Some(false),
                _ => None,
            };
            let (flags, positional) = split_flags(args, &import_flags)?;
            if is_help(&flags) {
                return Ok(Invocation::Help);
            }
            let [file] = positional.as_slice() else {
                return Err(format!(
                    "ctr images import takes exactly one file (or - for stdin), got {}",
                    positional.len()
                )
                .into());
            };
            let mut labels = BTreeMap::new();
            for (_, kv) in flags.iter().filter(|(n, _)| n == "label") {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                labels.insert(k.to_owned(), v.to_owned());
            }
            let value = |name: &str| {
                flags
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            Ok(Invocation::Import {
                namespace,
                file: file.clone(),
                base_name: value("base-name").filter(|v| !v.is_empty()),
                labels,
                no_unpack: value("no-unpack").is_some_and(|v| v != "false"),
            })
        }
        "pull" => {
            let pull_flags = |name: &str| match name {
                "user" | "u" | "hosts-dir" | "platform" | "label" | "snapshotter" | "tlscacert"
                | "tlscert" | "tlskey" | "max-concurrent-downloads"
                | "max-concurrent-uploaded-layers" | "refresh" | "concurrent-layer-fetch-buffer" => {
                    Some(true)
                }
                "plain-http" | "skip-verify" | "k" | "all-platforms" | "local" | "print-chainid"
                | "http-dump" | "http-trace" | "skip-metadata" | "help" | "h" => Some(false),
                _ => None,
            };
            let (flags, positional) = split_flags(args, &pull_flags)?;
            if is_help(&flags) {
                return Ok(Invocation::Help);
            }
            let [reference] = positional.as_slice() else {
                return Err("please provide an image reference to pull".into());
            };
            let value = |names: &[&str]| {
                flags
                    .iter()
                    .rev()
                    .find(|(n, _)| names.contains(&n.as_str()))
                    .map(|(_, v)| v.clone())
            };
            let on = |names: &[&str]| value(names).is_some_and(|v| v != "false");
            let mut labels = BTreeMap::new();
            for (_, kv) in flags.iter().filter(|(n, _)| n == "label") {
                let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                labels.insert(k.to_owned(), v.to_owned());
            }
            let credentials = crate::pull::Credentials(value(&["user", "u"]).map(|u| {
                let (user, password) = u.split_once(':').unwrap_or((&u, ""));
                (user.to_owned(), password.to_owned())
            }));
            Ok(Invocation::Pull {
                namespace,
                reference: reference.clone(),
                credentials,
                plain_http: on(&["plain-http"]),
                hosts_dir: value(&["hosts-dir"]).is_some_and(|v| !v.is_empty()),
                tls: crate::registries::Tls {
                    ca_file: value(&["tlscacert"]).map(PathBuf::from),
                    cert_file: value(&["tlscert"]).map(PathBuf::from),
                    key_file: value(&["tlskey"]).map(PathBuf::from),
                    insecure_skip_verify: Some(on(&["skip-verify", "k"])),
                },
                labels,
            })
        }
        "ls" | "list" => {
            let ls_flags = |name: &str| match name {
                "quiet" | "q" | "help" | "h" => Some(false),
                _ => None,
            };
            let (flags, filters) = split_flags(args, &ls_flags)?;
            if is_help(&flags) {
                return Ok(Invocation::Help);
            }
            if !filters.is_empty() {
                return Err("image filters are not emulated by the k3s stand-in".into());
            }
            Ok(Invocation::List {
                namespace,
                quiet: flags
                    .iter()
                    .any(|(n, v)| (n == "quiet" || n == "q") && v != "false"),
            })
        }
        "rm" | "remove" | "delete" | "del" => {
            let rm_flags = |name: &str| match name {
                "sync" | "help" | "h" => Some(false),
                _ => None,
            };
            let (flags, names) = split_flags(args, &rm_flags)?;
            if is_help(&flags) {
                return Ok(Invocation::Help);
            }
            Ok(Invocation::Remove { namespace, names })
        }
        other => Err(format!(
            "'ctr images {other}' is not emulated by the k3s stand-in (only import, pull, ls and rm are)"
        )
        .into()),
    }
}

/// containerd's human size (`2.1 KiB`, `512.0 B`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{size:.1} {}", UNITS[i])
}

/// Lays out rows as Go's tabwriter does for ctr (every cell ends with a
/// tab; a column is as wide as its widest cell plus one space).
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            let pad = widths[c] + 1 - cell.chars().count();
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push('\n');
    }
    out
}

/// `ctr images ls` output.
pub fn list_output(records: &[ImageRecord], quiet: bool) -> String {
    if quiet {
        return records.iter().map(|r| format!("{}\n", r.name)).collect();
    }
    let mut rows = vec![
        ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>(),
    ];
    for r in records {
        let mut platforms = r.platforms.clone();
        platforms.sort();
        platforms.dedup();
        let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let dash = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        rows.push(vec![
            r.name.clone(),
            r.target.media_type.clone(),
            r.target.digest.clone(),
            human_size(r.size),
            dash(platforms),
            dash(labels),
        ]);
    }
    table(&rows)
}

/// Go's wording of an I/O error (`no such file or directory`).
fn go_io_error(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The data dir `ctr` works on.
pub fn data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("K3S_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

/// Runs an invocation; what it prints goes to `out`.
pub fn execute(
    invocation: Invocation,
    data_dir: &Path,
    out: &mut dyn Write,
) -> Result<(), CtrError> {
    let store = ImageStore::new(data_dir);
    let io_err = |e: io::Error| CtrError(format!("image store: {}", go_io_error(&e)));
    match invocation {
        Invocation::Help => {
            let _ = out.write_all(USAGE.as_bytes());
            Ok(())
        }
        Invocation::Import {
            namespace,
            file,
            base_name,
            labels,
            no_unpack,
        } => {
            let base = base_name.unwrap_or_else(|| {
                let today = time::OffsetDateTime::now_utc().date();
                format!("import-{today}")
            });
            let found = if file == "-" {
                let mut input = io::BufReader::with_capacity(1 << 20, io::stdin().lock());
                let found = images::read_archive(&mut input, Some(&base))?;
                // Read what follows the end of the archive (`docker save`
                // pads it), so that whoever streams it in is not cut off.
                let _ = io::copy(&mut input, &mut io::sink());
                found
            } else {
                let f = std::fs::File::open(&file)
                    .map_err(|e| format!("open {file}: {}", go_io_error(&e)))?;
                images::read_archive(io::BufReader::with_capacity(1 << 20, f), Some(&base))?
            };
            let records = store.import(&namespace, &found, &labels).map_err(io_err)?;
            if !no_unpack {
                for r in records {
                    let _ = writeln!(out, "unpacking {} ({})...done", r.name, r.target.digest);
                }
            }
            Ok(())
        }
        Invocation::Pull {
            namespace,
            reference,
            credentials,
            plain_http,
            hosts_dir,
            tls,
            labels,
        } => {
            let started = std::time::Instant::now();
            let reference = crate::pull::Reference::parse(&reference)?;
            // ctr resolves through the registry hosts only when told where
            // they are (`--hosts-dir`, k3s's
            // `<data-dir>/agent/etc/containerd/certs.d`); otherwise it goes
            // to the registry itself.
            let endpoints = if hosts_dir {
                let node = crate::registries::node_snapshot(data_dir);
                node.registries
                    .endpoints(&reference.registry, node.disable_default_endpoint)
            } else {
                let mut url = crate::registries::default_endpoint(&reference.registry);
                if plain_http {
                    url.scheme = "http".into();
                }
                vec![crate::registries::Endpoint {
                    url,
                    rewrite: BTreeMap::new(),
                    mirror_of: None,
                    config: crate::registries::RegistryConfig {
                        auth: None,
                        tls: Some(tls),
                    },
                }]
            };
            let _ = writeln!(out, "{}: resolving", reference.name);
            let records = crate::pull::pull_and_store(
                data_dir,
                &namespace,
                &reference,
                &endpoints,
                &credentials,
                &[],
                &labels,
            )?;
            let elapsed = started.elapsed();
            for r in records {
                let _ = writeln!(out, "{}: resolved", r.name);
                let _ = writeln!(
                    out,
                    "elapsed: {:.1} s\ttotal: {}",
                    elapsed.as_secs_f64(),
                    human_size(r.size)
                );
                let platform = r
                    .platforms
                    .iter()
                    .find(|p| **p == images::host_platform())
                    .or(r.platforms.first())
                    .cloned()
                    .unwrap_or_else(images::host_platform);
                let _ = writeln!(out, "unpacking {platform} {}...", r.target.digest);
                let _ = writeln!(out, "done: {}", images::go_duration(started.elapsed()));
            }
            Ok(())
        }
        Invocation::List { namespace, quiet } => {
            let records = store.list(&namespace).map_err(io_err)?;
            let _ = out.write_all(list_output(&records, quiet).as_bytes());
            Ok(())
        }
        Invocation::Remove { namespace, names } => {
            let mut failed = None;
            for name in names {
                match store.remove(&namespace, &name) {
                    Ok(true) => {
                        let _ = writeln!(out, "{name}");
                    }
                    Ok(false) => {
                        failed = Some(format!(
                            "unable to delete {name}: image {name:?}: not found"
                        ))
                    }
                    Err(e) => return Err(io_err(e)),
                }
            }
            failed.map_or(Ok(()), |e| Err(CtrError(e)))
        }
    }
}

/// `k3s ctr ARGS...`: the exit status.
pub fn run(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> i32 {
    let result =
        parse(args, env).and_then(|inv| execute(inv, &data_dir(env), &mut io::stdout().lock()));
    match result {
        Ok(()) => 0,
        Err(CtrError(msg)) => {
            let _ = writeln!(io::stderr().lock(), "ctr: {msg}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::tests::{docker_archive, layer_tar};

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn command_lines() {
        for line in [
            "images import /x.tar",
            "-n k8s.io images import /x.tar",
            "--namespace=k8s.io image import /x.tar",
            "i import /x.tar",
        ] {
            match parse(&args(line), &no_env).unwrap() {
                Invocation::Import {
                    namespace, file, ..
                } => {
                    assert_eq!((namespace.as_str(), file.as_str()), ("k8s.io", "/x.tar"))
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        let Invocation::Import {
            base_name,
            labels,
            no_unpack,
            file,
            ..
        } = parse(
            &args("images import --base-name b --label a=1 --no-unpack --all-platforms -"),
            &no_env,
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(base_name.as_deref(), Some("b"));
        assert_eq!(labels["a"], "1");
        assert!(no_unpack);
        assert_eq!(file, "-");
        assert_eq!(
            parse(&args("images ls -q"), &no_env).unwrap(),
            Invocation::List {
                namespace: "k8s.io".into(),
                quiet: true
            }
        );
        let env = |k: &str| (k == "CONTAINERD_NAMESPACE").then(|| "default".to_owned());
        assert_eq!(
            parse(&args("images list"), &env).unwrap(),
            Invocation::List {
                namespace: "default".into(),
                quiet: false
            }
        );
        assert_eq!(parse(&args(""), &no_env).unwrap(), Invocation::Help);
        assert!(parse(&args("containers ls"), &no_env).is_err());
        let Invocation::Pull {
            reference,
            credentials,
            plain_http,
            hosts_dir,
            ..
        } = parse(
            &args("images pull --plain-http --user u:p --hosts-dir /d busybox"),
            &no_env,
        )
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(reference, "busybox");
        assert_eq!(
            credentials,
            crate::pull::Credentials(Some(("u".into(), "p".into())))
        );
        assert!(plain_http && hosts_dir);
        assert!(parse(&args("images pull"), &no_env).is_err());
        assert!(parse(&args("images import"), &no_env).is_err());
        assert_eq!(
            parse(&args("images import --bogus x"), &no_env).unwrap_err(),
            CtrError("flag provided but not defined: -bogus".into())
        );
        assert!(parse(&args("-n ../x images ls"), &no_env).is_err());
    }

    #[test]
    fn sizes_like_containerd() {
        assert_eq!(human_size(0), "0.0 B");
        assert_eq!(human_size(512), "512.0 B");
        assert_eq!(human_size(2150), "2.1 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn import_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (tar, _) = docker_archive(&["hello:1"], &layer_tar("hello", b"hello\n"));
        let file = dir.path().join("hello.tar");
        std::fs::write(&file, tar).unwrap();
        let data = dir.path().join("data");
        let mut out = Vec::new();
        let inv = parse(&args(&format!("images import {}", file.display())), &no_env).unwrap();
        execute(inv, &data, &mut out).unwrap();
        let printed = String::from_utf8(out).unwrap();
        let records = ImageStore::new(&data).list("k8s.io").unwrap();
        assert_eq!(
            printed,
            format!(
                "unpacking docker.io/library/hello:1 ({})...done\n",
                records[0].target.digest
            )
        );
        let mut out = Vec::new();
        execute(parse(&args("images ls"), &no_env).unwrap(), &data, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
        );
        // Columns line up: each starts where its header does.
        let at = |line: &str, what: &str| line.find(what).unwrap();
        assert_eq!(at(lines[0], "DIGEST"), at(lines[1], "sha256:"));
        assert!(lines[1].contains(" linux/amd64 "), "{text}");
        assert!(lines[1].trim_end().ends_with(" -"), "{text}");
        let mut out = Vec::new();
        execute(
            parse(&args("images rm docker.io/library/hello:1 nope"), &no_env).unwrap(),
            &data,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "docker.io/library/hello:1\n"
        );
        let mut out = Vec::new();
        execute(
            parse(&args("images ls -q"), &no_env).unwrap(),
            &data,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty());
        let missing = parse(&args("images import /does/not/exist.tar"), &no_env).unwrap();
        assert_eq!(
            execute(missing, &data, &mut Vec::new()).unwrap_err(),
            CtrError("open /does/not/exist.tar: no such file or directory".into())
        );
    }
}
