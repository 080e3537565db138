//! `k3s crictl`: the image slice of crictl (`pull`, `images`), run as its
//! own process as with k3s (`docker exec NODE k3s crictl pull IMAGE`).
//!
//! crictl asks containerd's CRI plugin, which pulls through the registry
//! configuration k3s generated from `registries.yaml` at start; the
//! stand-in reads the node's snapshot of that configuration (see
//! `registries`) and the image records under its data dir
//! (`$K3S_DATA_DIR`, default `/var/lib/rancher/k3s`), namespace `k8s.io`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use crate::ctr::data_dir;
use crate::images::{self, ImageRecord, ImageStore, K8S_NAMESPACE};
use crate::pull::{self, Credentials, Reference};
use crate::registries;

/// The label containerd's CRI plugin puts on the images it manages.
pub const CRI_MANAGED_LABEL: (&str, &str) = ("io.cri-containerd.image", "managed");

const USAGE: &str = "NAME:
   crictl - client for CRI (k3s stand-in: images only)

USAGE:
   k3s crictl [global options] command [command options] [arguments...]

COMMANDS:
   pull [--creds USER[:PASSWORD]] [--auth BASE64] IMAGE   pull an image through the node's registries.yaml
   images|image|img [-q] [--digests] [--no-trunc] [IMAGE] list images

GLOBAL OPTIONS:
   --runtime-endpoint, -r, --image-endpoint, -i, --timeout, -t, --config, -c   accepted and ignored
";

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `--help`, or no command.
    Help,
    /// `pull`.
    Pull {
        /// The image reference, as given.
        image: String,
        /// `--creds` / `--auth`.
        credentials: Credentials,
    },
    /// `images`.
    Images {
        /// `-q`: image IDs only.
        quiet: bool,
        /// `--digests`.
        digests: bool,
        /// `--no-trunc`.
        no_trunc: bool,
        /// An image name to filter by.
        filter: Option<String>,
    },
}

/// Flags as given: `(name, value)` in order.
type Flags = Vec<(String, String)>;

/// Splits flags from positional arguments; `takes_value` says which flags
/// take a value (`None`: unknown flag).
fn split(
    args: &[String],
    takes_value: &dyn Fn(&str) -> Option<bool>,
) -> Result<(Flags, Vec<String>), String> {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (stripped.to_owned(), None),
        };
        let value = match (takes_value(&name), inline) {
            (None, _) => return Err(format!("flag provided but not defined: -{name}")),
            (Some(_), Some(v)) => v,
            (Some(false), None) => "true".into(),
            (Some(true), None) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                i += 1;
                v.clone()
            }
        };
        flags.push((name, value));
    }
    Ok((flags, positional))
}

/// Parses `k3s crictl ARGS...`.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let global = |name: &str| match name {
        "runtime-endpoint" | "r" | "image-endpoint" | "i" | "timeout" | "t" | "config" | "c" => {
            Some(true)
        }
        "debug" | "D" | "help" | "h" => Some(false),
        _ => None,
    };
    // The command is the first argument that is neither a flag nor the
    // value of a global flag given as `-r VALUE`.
    let is_flag_value = |i: usize| {
        i > 0
            && global(args[i - 1].trim_start_matches('-')) == Some(true)
            && !args[i - 1].contains('=')
    };
    let command_at = (0..args.len()).find(|&i| !args[i].starts_with('-') && !is_flag_value(i));
    let Some(at) = command_at else {
        return Ok(Invocation::Help);
    };
    let (flags, _) = split(&args[..at], &global)?;
    if flags.iter().any(|(n, _)| n == "help" || n == "h") {
        return Ok(Invocation::Help);
    }
    let rest = &args[at + 1..];
    match args[at].as_str() {
        "pull" => {
            let (flags, positional) = split(rest, &|name| match name {
                "creds" | "auth" | "username" | "u" | "pod-config" | "p" | "annotation" | "a"
                | "platform" => Some(true),
                "help" | "h" => Some(false),
                _ => None,
            })?;
            if flags.iter().any(|(n, _)| n == "help" || n == "h") {
                return Ok(Invocation::Help);
            }
            let [image] = positional.as_slice() else {
                return Err("image name cannot be empty".into());
            };
            let value = |name: &str| {
                flags
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let credentials = if let Some(creds) = value("creds") {
                let (user, password) = creds.split_once(':').unwrap_or((&creds, ""));
                Credentials(Some((user.to_owned(), password.to_owned())))
            } else if let Some(auth) = value("auth") {
                let basic = registries::Auth {
                    auth: Some(auth),
                    ..Default::default()
                }
                .basic()
                .ok_or("invalid --auth: not base64 of USER:PASSWORD")?;
                Credentials(Some(basic))
            } else {
                Credentials(None)
            };
            Ok(Invocation::Pull {
                image: image.clone(),
                credentials,
            })
        }
        "images" | "image" | "img" => {
            let (flags, positional) = split(rest, &|name| match name {
                "quiet" | "q" | "digests" | "no-trunc" | "verbose" | "v" | "help" | "h" => {
                    Some(false)
                }
                "output" | "o" | "filter" | "f" => Some(true),
                _ => None,
            })?;
            if flags.iter().any(|(n, _)| n == "help" || n == "h") {
                return Ok(Invocation::Help);
            }
            let on = |names: &[&str]| {
                flags
                    .iter()
                    .any(|(n, v)| names.contains(&n.as_str()) && v != "false")
            };
            if on(&["output", "o", "filter", "f"]) {
                return Err("--output and --filter are not emulated by the k3s stand-in".into());
            }
            Ok(Invocation::Images {
                quiet: on(&["quiet", "q"]),
                digests: on(&["digests"]),
                no_trunc: on(&["no-trunc"]),
                filter: positional.first().cloned(),
            })
        }
        other => Err(format!(
            "'crictl {other}' is not emulated by the k3s stand-in (only pull and images are)"
        )),
    }
}

/// go-units' `HumanSizeWithPrecision(size, 3)`: decimal units, three
/// significant digits (`2.15kB`, `772kB`, `12.3MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    let int_digits = if size < 1.0 {
        1
    } else {
        size.log10().floor() as usize + 1
    };
    let decimals = 3usize.saturating_sub(int_digits);
    let mut text = format!("{size:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[i])
}

/// Lays out rows as Go's tabwriter does for crictl (minimum width 20,
/// padding 3; the last column is not padded).
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            (widest + 3).max(20)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (c, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `crictl images` output from the `k8s.io` records: one row per repo tag
/// (or one `<none>` row for an image known only by digest), grouped by
/// image ID as the CRI lists them.
pub fn images_output(
    records: &[ImageRecord],
    quiet: bool,
    digests: bool,
    no_trunc: bool,
    filter: Option<&str>,
) -> String {
    let filter = filter.and_then(|f| images::normalize_reference(f).ok());
    // image ID -> (repo tags, repo digests, size)
    let mut by_id: BTreeMap<&str, (Vec<String>, Vec<String>, u64)> = BTreeMap::new();
    for r in records {
        let entry = by_id.entry(r.config_digest.as_str()).or_default();
        let (repo, tag) = images::repository(&r.name);
        let repo_digest = if r.name.contains('@') {
            r.name.clone()
        } else {
            format!("{repo}@{}", r.target.digest)
        };
        if !entry.1.contains(&repo_digest) {
            entry.1.push(repo_digest);
        }
        if tag.is_some() && !entry.0.contains(&r.name) {
            entry.0.push(r.name.clone());
        }
        entry.2 = entry.2.max(r.size);
    }
    let matches = |tags: &[String], digests: &[String]| match &filter {
        None => true,
        Some(f) => tags.contains(f) || digests.contains(f),
    };
    if quiet {
        return by_id
            .iter()
            .filter(|(_, (t, d, _))| matches(t, d))
            .map(|(id, _)| format!("{id}\n"))
            .collect();
    }
    let mut header = vec!["IMAGE".to_owned(), "TAG".to_owned()];
    if digests {
        header.push("DIGEST".to_owned());
    }
    header.extend(["IMAGE ID".to_owned(), "SIZE".to_owned()]);
    let mut rows = vec![header];
    for (id, (tags, repo_digests, size)) in &by_id {
        if !matches(tags, repo_digests) {
            continue;
        }
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let shown_id = if no_trunc {
            (*id).to_owned()
        } else {
            hex.chars().take(13).collect()
        };
        let digest = repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| {
                let h = d.strip_prefix("sha256:").unwrap_or(d);
                if no_trunc {
                    d.to_owned()
                } else {
                    h.chars().take(13).collect()
                }
            })
            .unwrap_or_else(|| "<none>".into());
        let names: Vec<(String, String)> = if tags.is_empty() {
            let repo = repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(r, _)| r.to_owned())
                .unwrap_or_else(|| "<none>".into());
            vec![(repo, "<none>".into())]
        } else {
            tags.iter()
                .map(|t| {
                    let (repo, tag) = images::repository(t);
                    (repo.to_owned(), tag.unwrap_or("<none>").to_owned())
                })
                .collect()
        };
        for (repo, tag) in names {
            let mut row = vec![repo, tag];
            if digests {
                row.push(digest.clone());
            }
            row.extend([shown_id.clone(), human_size(*size)]);
            rows.push(row);
        }
    }
    table(&rows)
}

/// Pulls as the CRI does: through the node's registry configuration,
/// recording the tag and the repo digest, labelled as CRI-managed.
/// Returns the image ID.
pub fn pull(data_dir: &Path, image: &str, credentials: &Credentials) -> Result<String, String> {
    let reference = Reference::parse(image)?;
    let node = registries::node_snapshot(data_dir);
    let endpoints = node
        .registries
        .endpoints(&reference.registry, node.disable_default_endpoint);
    let labels: BTreeMap<String, String> = [(
        CRI_MANAGED_LABEL.0.to_owned(),
        CRI_MANAGED_LABEL.1.to_owned(),
    )]
    .into();
    // The repo digest name is known only once the target is: record the
    // reference first, then its digest name.
    let records = pull::pull_and_store(
        data_dir,
        K8S_NAMESPACE,
        &reference,
        &endpoints,
        credentials,
        &[],
        &labels,
    )
    .map_err(|e| {
        let code = if e.ends_with(": not found") {
            "NotFound"
        } else {
            "Unknown"
        };
        format!(
            "pulling image: rpc error: code = {code} desc = failed to pull and unpack image {:?}: {e}",
            reference.name
        )
    })?;
    let record = records
        .into_iter()
        .next()
        .ok_or("pulling image: nothing recorded")?;
    let digest_name = reference.digest_name(&record.target.digest);
    if digest_name != record.name {
        let store = ImageStore::new(data_dir);
        let mut by_digest = record.clone();
        by_digest.name = digest_name;
        store
            .put(K8S_NAMESPACE, &by_digest)
            .map_err(|e| format!("image store: {e}"))?;
    }
    Ok(record.config_digest)
}

/// Runs an invocation; what it prints goes to `out`.
pub fn execute(invocation: Invocation, data_dir: &Path, out: &mut dyn Write) -> Result<(), String> {
    match invocation {
        Invocation::Help => {
            let _ = out.write_all(USAGE.as_bytes());
            Ok(())
        }
        Invocation::Pull { image, credentials } => {
            let id = pull(data_dir, &image, &credentials)?;
            let _ = writeln!(out, "Image is up to date for {id}");
            Ok(())
        }
        Invocation::Images {
            quiet,
            digests,
            no_trunc,
            filter,
        } => {
            let records = ImageStore::new(data_dir)
                .list(K8S_NAMESPACE)
                .map_err(|e| format!("listing images: {e}"))?;
            let text = images_output(&records, quiet, digests, no_trunc, filter.as_deref());
            let _ = out.write_all(text.as_bytes());
            Ok(())
        }
    }
}

/// `k3s crictl ARGS...`: the exit status. Failures are crictl's fatal
/// line (logrus format) and status 1.
pub fn run(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> i32 {
    let result = parse(args).and_then(|inv| execute(inv, &data_dir(env), &mut io::stdout().lock()));
    match result {
        Ok(()) => 0,
        Err(msg) => {
            let line = crate::log::format_line(
                time::OffsetDateTime::now_utc(),
                crate::log::Level::Fatal,
                &msg,
            );
            let _ = writeln!(io::stderr().lock(), "{line}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            parse(&args("pull busybox")).unwrap(),
            Invocation::Pull {
                image: "busybox".into(),
                credentials: Credentials(None)
            }
        );
        assert_eq!(
            parse(&args(
                "-r unix:///run/k3s/containerd/containerd.sock pull --creds u:p x"
            ))
            .unwrap(),
            Invocation::Pull {
                image: "x".into(),
                credentials: Credentials(Some(("u".into(), "p".into())))
            }
        );
        assert_eq!(
            parse(&args("pull --auth dTpw x")).unwrap(),
            Invocation::Pull {
                image: "x".into(),
                credentials: Credentials(Some(("u".into(), "p".into())))
            }
        );
        assert!(parse(&args("pull")).is_err());
        assert!(parse(&args("pull --bogus x")).is_err());
        assert!(parse(&args("ps")).is_err());
        assert_eq!(parse(&[]).unwrap(), Invocation::Help);
        assert_eq!(
            parse(&args("images -q")).unwrap(),
            Invocation::Images {
                quiet: true,
                digests: false,
                no_trunc: false,
                filter: None
            }
        );
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2150), "2.15kB");
        assert_eq!(human_size(772_000), "772kB");
        assert_eq!(human_size(12_345_678), "12.3MB");
    }

    #[test]
    fn images_table() {
        let record = |name: &str, config: &str| ImageRecord {
            name: name.into(),
            target: images::Descriptor {
                media_type: images::MEDIA_OCI_MANIFEST.into(),
                digest: format!("sha256:{}", "b".repeat(64)),
                size: 100,
                annotations: None,
                platform: None,
            },
            config_digest: format!("sha256:{}", config.repeat(64)),
            size: 2150,
            platforms: vec!["linux/amd64".into()],
            labels: BTreeMap::new(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        let records = [
            record("registry.localhost:5000/app:1", "a"),
            record(
                &format!("registry.localhost:5000/app@sha256:{}", "b".repeat(64)),
                "a",
            ),
            record(
                &format!("docker.io/library/x@sha256:{}", "b".repeat(64)),
                "c",
            ),
        ];
        let text = images_output(&records, false, false, false, None);
        let lines: Vec<&str> = text.lines().collect();
        // Columns as wide as their widest cell plus 3, at least 20.
        assert_eq!(
            lines[0],
            format!("{:<30}{:<20}{:<20}SIZE", "IMAGE", "TAG", "IMAGE ID")
        );
        assert_eq!(
            lines[1],
            format!(
                "{:<30}{:<20}{:<20}2.15kB",
                "registry.localhost:5000/app", "1", "aaaaaaaaaaaaa"
            )
        );
        assert!(lines[2].starts_with(&format!("{:<30}<none>", "docker.io/library/x")));
        assert_eq!(
            images_output(
                &records,
                true,
                false,
                false,
                Some("registry.localhost:5000/app:1")
            ),
            format!("sha256:{}\n", "a".repeat(64))
        );
    }
}
