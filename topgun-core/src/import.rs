//! Images from the host's Docker engine into a cluster's k3s nodes
//! ([`import_images`]), the way k3d does it, streamed end to end.
//!
//! `docker save` (the export API) streams into a temporary file on the host;
//! the file goes into containers as one tar entry whose body is read from the
//! file while it is sent, so no image is ever held in memory.
//!
//! - Without a node filter the archive is written once into the cluster's
//!   shared images volume ([`IMAGES_DIR`] on every k3s node), through any
//!   container that mounts it (running or not), as
//!   `topgun-<12 hex of sha256 over the names>.tar` ([`archive_name`]). Then
//!   `k3s ctr images import` runs on every running node, four at a time.
//!   Nodes that do not run, and nodes added later, import it when k3s starts
//!   (k3s's air-gap path).
//! - With a filter only the selected nodes get the images, streamed into
//!   `k3s ctr images import -` on each (never through the shared directory,
//!   which every node reads at start): nothing is left in the nodes, even
//!   when the import is interrupted, and no node needs a shell or `rm`.
//!   Every selected node must run.
//!
//! Everything is checked before any node is touched: the cluster, every
//! image on the host engine, the filter, and the images volume. Every step
//! has a deadline that grows with the archive's size ([`step_limit`]).
//!
//! The archive stays in the images volume until the cluster is deleted.
//! Importing the same names again (after a rebuild) replaces it. Archives
//! of different sets of names that share a name (`import a b`, then
//! `import a`) both stay, and k3s imports each at start in file-name order,
//! so the older `a` may win at a node's next start: import such sets
//! together, or the name alone each time.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerSummary, ExecConfig};
use bollard::query_parameters::UploadToContainerOptions;
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::docker as dockerx;
use crate::plan::{IMAGES_DIR, images_volume_name};
use crate::progress::{Event, Progress, emit};
use crate::spec::{NodeCounts, NodeFilter, Role};
use crate::{Error, Result, labels};

/// How many nodes receive or import the archive at the same time.
pub(crate) const PARALLEL: usize = 4;
/// The size of the pieces the archive is read and sent in.
const CHUNK: u64 = 64 * 1024;
/// How much of a failed command's output is kept for the error.
const OUTPUT_KEPT: usize = 4096;

/// How to import.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Only these nodes (servers and agents), each of which must run; `None`
    /// is every k3s node, now or at its next start.
    pub nodes: Option<NodeFilter>,
    /// Receives progress events.
    pub progress: Option<Progress>,
}

impl ImportOptions {
    /// Every k3s node, no progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only the nodes `filter` selects (servers and agents).
    pub fn nodes(mut self, filter: NodeFilter) -> Self {
        self.nodes = Some(filter);
        self
    }

    /// Sends progress events to `progress`.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// An image that was imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedImage {
    /// The reference as given (`name:tag`, or an id).
    pub name: String,
    /// Its id on the host engine (`sha256:...`).
    pub id: String,
}

/// When a node gets the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportWhen {
    /// Imported by this run (`k3s ctr images import`).
    Now,
    /// The node does not run; k3s imports the archive from the images
    /// volume when it starts.
    NextStart,
}

/// What one node got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeImport {
    /// The container name.
    pub name: String,
    /// `server` or `agent`.
    pub role: Role,
    /// Now or at its next start.
    pub when: ImportWhen,
    /// How long its import took, for imports done now.
    #[serde(serialize_with = "ser_opt_ms", rename = "elapsed_ms")]
    pub elapsed: Option<Duration>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Imported {
    /// The cluster name.
    pub cluster: String,
    /// The images, in the order given.
    pub images: Vec<ImportedImage>,
    /// The size of the archive (`docker save` output).
    pub bytes: u64,
    /// The archive's path in the shared images volume, as nodes see it;
    /// `None` for a filtered import (streamed into each node's `ctr`).
    pub archive: Option<String>,
    /// The selected k3s nodes, servers then agents, each by index.
    pub nodes: Vec<NodeImport>,
    /// How long the whole import took.
    #[serde(serialize_with = "ser_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
}

impl Imported {
    /// The archive's size for people: `104.9 MB` (decimal units).
    pub fn size(&self) -> String {
        crate::progress::megabytes(self.bytes)
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn ser_opt_ms<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(d.as_millis() as u64),
        None => s.serialize_none(),
    }
}

/// The deadline of one step (export, upload, import on a node) that moves
/// `bytes`: 60 s plus 10 s per started 100 MB.
pub(crate) fn step_limit(bytes: u64) -> Duration {
    Duration::from_secs(60 + 10 * bytes.div_ceil(100_000_000))
}

/// The archive's file name in the images volume: `topgun-<12 hex>.tar`,
/// from the sorted image names. The same names give the same file, so
/// importing an image again after a rebuild replaces its archive rather
/// than piling up archives that every node imports at each start.
pub(crate) fn archive_name(images: &[String]) -> String {
    let mut names: Vec<&str> = images.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut hasher = Sha256::new();
    for name in names {
        // Length-prefixed, so no two lists hash the same text.
        hasher.update(format!("{}:{name}\n", name.len()).as_bytes());
    }
    let digest = hasher.finalize();
    format!("topgun-{}.tar", &hex::encode(digest)[..12])
}

/// A k3s node as the import sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    role: Role,
    index: u32,
    running: bool,
    /// It mounts the images volume at [`IMAGES_DIR`].
    mounts_volume: bool,
}

/// The k3s nodes among a cluster's containers, servers then agents, by
/// index.
fn k3s_nodes(containers: &[ContainerSummary], volume: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = containers
        .iter()
        .filter_map(|c| {
            let labels = c.labels.as_ref()?;
            let role = Role::from_label(labels.get(labels::ROLE)?)?;
            if !matches!(role, Role::Server | Role::Agent) {
                return None;
            }
            Some(Node {
                name: dockerx::summary_name(c),
                role,
                index: labels
                    .get(labels::INDEX)
                    .and_then(|i| i.parse().ok())
                    .unwrap_or_default(),
                running: c.state.as_ref().is_some_and(|s| s.to_string() == "running"),
                mounts_volume: c.mounts.iter().flatten().any(|m| {
                    m.name.as_deref() == Some(volume)
                        && m.destination.as_deref() == Some(IMAGES_DIR)
                }),
            })
        })
        .collect();
    nodes.sort_by_key(|n| (n.role != Role::Server, n.index));
    nodes
}

/// What an import will do, decided before any node is touched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct ImportPlan {
    /// The container the archive is uploaded into the images volume
    /// through; `None` when nothing goes to the volume.
    via: Option<String>,
    /// Running nodes that import the archive from the volume now.
    from_volume: Vec<Node>,
    /// Nodes that import it from the volume at their next start.
    next_start: Vec<Node>,
    /// Running nodes that get their own temporary copy.
    direct: Vec<Node>,
}

impl ImportPlan {
    /// Every node concerned, servers then agents, by index.
    fn nodes(&self) -> Vec<&Node> {
        let mut all: Vec<&Node> = self
            .from_volume
            .iter()
            .chain(&self.next_start)
            .chain(&self.direct)
            .collect();
        all.sort_by_key(|n| (n.role != Role::Server, n.index));
        all
    }
}

fn list_names(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides which nodes get the images and how.
fn plan_import(
    cluster: &str,
    nodes: &[Node],
    filter: Option<&NodeFilter>,
    volume_exists: bool,
) -> Result<ImportPlan> {
    if nodes.is_empty() {
        return Err(Error::invalid(
            format!("cluster {cluster:?}"),
            "has no k3s nodes to import images into",
            "",
        ));
    }
    let mut plan = ImportPlan::default();
    if let Some(filter) = filter {
        // Indices need not be dense after node deletes: bound them by the
        // highest that exists, then select the nodes that do.
        let top = |role: Role| {
            nodes
                .iter()
                .filter(|n| n.role == role)
                .map(|n| n.index + 1)
                .max()
                .unwrap_or(0)
        };
        let counts = NodeCounts {
            servers: top(Role::Server),
            agents: top(Role::Agent),
            etcd: 0,
            loadbalancer: false,
        };
        filter.check("image import", &[Role::Server, Role::Agent], &counts)?;
        let selected: Vec<&Node> = nodes
            .iter()
            .filter(|n| filter.matches(n.role, n.index))
            .collect();
        if selected.is_empty() {
            return Err(Error::invalid(
                format!("node filter {:?} of image import", filter.as_str()),
                format!("matches no k3s node of cluster {cluster:?}"),
                "select nodes that exist",
            ));
        }
        let stopped: Vec<&Node> = selected.iter().copied().filter(|n| !n.running).collect();
        if !stopped.is_empty() {
            return Err(Error::invalid(
                format!("node filter {:?} of image import", filter.as_str()),
                format!(
                    "selects nodes that do not run: {}; nothing was imported",
                    list_names(&stopped)
                ),
                "start them first, or leave out the filter: nodes that do not run then import \
                 the images at their next start",
            ));
        }
        plan.direct = selected.into_iter().cloned().collect();
        return Ok(plan);
    }
    if !volume_exists {
        return Err(Error::invalid(
            format!("cluster {cluster:?}"),
            format!(
                "has no images volume ({}): it was made by an older topgun; nothing was imported",
                images_volume_name(cluster)
            ),
            "import into its running nodes with `--nodes all`, or recreate the cluster",
        ));
    }
    let without: Vec<&Node> = nodes
        .iter()
        .filter(|n| !n.mounts_volume && !n.running)
        .collect();
    if !without.is_empty() {
        return Err(Error::invalid(
            format!("cluster {cluster:?}"),
            format!(
                "has nodes that do not run and do not mount the images volume (made by an older \
                 topgun): {}; nothing was imported",
                list_names(&without)
            ),
            "start them first, or select the nodes with `--nodes`",
        ));
    }
    for n in nodes {
        match (n.mounts_volume, n.running) {
            (true, true) => plan.from_volume.push(n.clone()),
            (true, false) => plan.next_start.push(n.clone()),
            (false, _) => plan.direct.push(n.clone()),
        }
    }
    plan.via = plan
        .from_volume
        .first()
        .or(plan.next_start.first())
        .map(|n| n.name.clone());
    Ok(plan)
}

/// The 512-byte tar header of the one regular file `name` (GNU format, so
/// sizes past 8 GiB fit), mode 0644, owned by root.
fn tar_header(name: &str, size: u64, mtime: u64) -> Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header
        .set_path(name)
        .map_err(|e| Error::io("cannot build a tar header for", name, e))?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_cksum();
    Ok(header.as_bytes().to_vec())
}

/// What follows a file body of `size` bytes to end the archive: zeros up to
/// the next 512-byte block, then the two zero blocks that end a tar.
fn tar_trailer(size: u64) -> Vec<u8> {
    let pad = (512 - size % 512) % 512;
    vec![0; pad as usize + 1024]
}

/// `size` bytes of `file`, in pieces, read as they are sent.
fn file_chunks(
    file: tokio::fs::File,
    size: u64,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    stream::try_unfold((file, size), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; CHUNK.min(left) as usize];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the image archive on the host shrank while it was sent",
            ));
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, left - n as u64))))
    })
}

/// The exported archive: a temporary file on the host, removed on drop.
struct Archive {
    file: tempfile::NamedTempFile,
    size: u64,
}

impl Archive {
    /// The archive's bytes, read from the file as they are sent.
    fn body(&self) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static> {
        let file = self
            .file
            .reopen()
            .map_err(|e| Error::io("cannot reopen", self.file.path(), e))?;
        Ok(file_chunks(tokio::fs::File::from_std(file), self.size))
    }

    /// A tar stream holding the archive as the one file `name`.
    fn tar_stream(
        &self,
        name: &str,
    ) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static> {
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let prefix = tar_header(name, self.size, mtime)?;
        Ok(stream::iter([Ok(Bytes::from(prefix))])
            .chain(self.body()?)
            .chain(stream::iter([Ok(Bytes::from(tar_trailer(self.size)))])))
    }

    /// Uploads the archive into `container` (running or not) as the file
    /// `name` in the existing directory `dir`.
    async fn upload(&self, docker: &Docker, container: &str, dir: &str, name: &str) -> Result<()> {
        let limit = step_limit(self.size);
        let body = bollard::body_try_stream(self.tar_stream(name)?);
        // The engine answers once it has the whole body: the client's own
        // request timeout must cover the upload.
        let docker = docker.clone().with_timeout(limit);
        let action = || format!("copy the image archive into {container}");
        tokio::time::timeout(
            limit,
            docker.upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: dir.to_owned(),
                    ..Default::default()
                }),
                body,
            ),
        )
        .await
        .map_err(|_| {
            Error::docker(
                format!("{} within {}s", action(), limit.as_secs()),
                bollard::errors::Error::RequestTimeoutError,
            )
        })?
        .map_err(|e| Error::docker(action(), e))
    }
}

/// Streams `docker save` of `images` into a temporary file.
async fn export(docker: &Docker, images: &[String], estimate: u64) -> Result<Archive> {
    let file = tempfile::Builder::new()
        .prefix("topgun-import-")
        .suffix(".tar")
        .tempfile()
        .map_err(|e| Error::io("cannot create a temporary file in", std::env::temp_dir(), e))?;
    let path = file.path().to_owned();
    let mut out = tokio::fs::File::from_std(
        file.reopen()
            .map_err(|e| Error::io("cannot open", path.clone(), e))?,
    );
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    let mut stream = docker.export_images(&names);
    let started = Instant::now();
    let mut size = 0u64;
    let action = || format!("export {}", images.join(", "));
    loop {
        let limit = step_limit(estimate.max(size));
        let next = tokio::time::timeout_at(started + limit, stream.next())
            .await
            .map_err(|_| {
                Error::docker(
                    format!("{} within {}s", action(), limit.as_secs()),
                    bollard::errors::Error::RequestTimeoutError,
                )
            })?;
        match next {
            None => break,
            Some(Err(e)) => return Err(Error::docker(action(), e)),
            Some(Ok(chunk)) => {
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io("cannot write", path.clone(), e))?;
                size += chunk.len() as u64;
            }
        }
    }
    out.flush()
        .await
        .map_err(|e| Error::io("cannot write", path.clone(), e))?;
    Ok(Archive { file, size })
}

/// What a command run in a node did.
struct ExecOutcome {
    code: i64,
    /// The end of its output (stdout and stderr).
    output: String,
    /// Whether its input (if any) was sent whole.
    fed: io::Result<()>,
}

impl ExecOutcome {
    /// `Ok` when `cmd` exited with 0 and got its input whole; else an
    /// [`Error::NodeCommand`] with the last lines of its output.
    fn result(self, cmd: &[&str]) -> Result<()> {
        if self.code == 0 && self.fed.is_ok() {
            return Ok(());
        }
        let lines: Vec<&str> = self
            .output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        Err(Error::NodeCommand {
            command: cmd.join(" "),
            code: self.code,
            output: lines[lines.len().saturating_sub(10)..].join(" | "),
            source: self.fed.err(),
        })
    }
}

/// Bytes for a command's stdin.
type Input = stream::BoxStream<'static, io::Result<Bytes>>;

/// Runs `cmd` in the running container `node` within `limit`, feeding it
/// `input` (then closing its stdin), keeping the end of its output and its
/// exit code.
async fn exec(
    docker: &Docker,
    node: &str,
    cmd: &[&str],
    input: Option<Input>,
    limit: Duration,
) -> Result<ExecOutcome> {
    let action = format!("run `{}` in {node}", cmd.join(" "));
    let run = async {
        let created = docker
            .create_exec(
                node,
                ExecConfig {
                    attach_stdin: Some(input.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
                    ..Default::default()
                },
            )
            .await?;
        let mut output = Vec::new();
        let mut fed = Ok(());
        if let StartExecResults::Attached {
            output: mut out,
            input: mut stdin,
        } = docker.start_exec(&created.id, None).await?
        {
            // Feed and drain at once: a command that writes a lot before it
            // reads would block otherwise.
            let feed = async {
                if let Some(mut input) = input {
                    while let Some(chunk) = input.next().await {
                        stdin.write_all(&chunk?).await?;
                    }
                    stdin.shutdown().await?;
                }
                Ok::<_, io::Error>(())
            };
            let drain = async {
                while let Some(chunk) = out.next().await {
                    let bytes = match chunk? {
                        LogOutput::StdOut { message }
                        | LogOutput::StdErr { message }
                        | LogOutput::Console { message }
                        | LogOutput::StdIn { message } => message,
                    };
                    output.extend_from_slice(&bytes);
                    if output.len() > 2 * OUTPUT_KEPT {
                        output.drain(..output.len() - OUTPUT_KEPT);
                    }
                }
                Ok::<_, bollard::errors::Error>(())
            };
            let (f, d) = tokio::join!(feed, drain);
            d?;
            fed = f;
        }
        // The output ends when the process does; the engine may take a
        // moment to record the exit code.
        loop {
            let info = docker.inspect_exec(&created.id).await?;
            if info.running != Some(true) {
                let keep = output.len().saturating_sub(OUTPUT_KEPT);
                return Ok::<_, bollard::errors::Error>(ExecOutcome {
                    code: info.exit_code.unwrap_or(-1),
                    output: String::from_utf8_lossy(&output[keep..]).into_owned(),
                    fed,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    match tokio::time::timeout(limit, run).await {
        Ok(r) => r.map_err(|e| Error::docker(action, e)),
        Err(_) => Err(Error::docker(
            format!("{action} within {}s", limit.as_secs()),
            bollard::errors::Error::RequestTimeoutError,
        )),
    }
}

/// `k3s ctr images import FILE` in `node`, where `FILE` is a path in the
/// node, or `-` with the archive streamed to its stdin.
async fn ctr_import(
    docker: &Docker,
    node: &str,
    file: &str,
    input: Option<Input>,
    size: u64,
) -> Result<()> {
    let cmd = ["k3s", "ctr", "images", "import", file];
    exec(docker, node, &cmd, input, step_limit(size))
        .await?
        .result(&cmd)
}

/// Inspects every image on the host engine: its id and size.
async fn inspect_images(docker: &Docker, images: &[String]) -> Result<Vec<(ImportedImage, u64)>> {
    futures_util::future::try_join_all(images.iter().map(|image| async move {
        match docker.inspect_image(image).await {
            Ok(info) => Ok((
                ImportedImage {
                    name: image.clone(),
                    id: info.id.unwrap_or_default(),
                },
                info.size.unwrap_or_default().max(0) as u64,
            )),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::ImportImageMissing {
                image: image.clone(),
            }),
            Err(e) => Err(Error::docker(format!("inspect image {image}"), e)),
        }
    }))
    .await
}

async fn volume_exists(docker: &Docker, volume: &str) -> Result<bool> {
    match docker.inspect_volume(volume).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(Error::docker(format!("inspect volume {volume}"), e)),
    }
}

/// Imports `images` from the host's Docker engine into the k3s nodes of
/// `cluster` (see the [module docs](self)).
///
/// Nothing is touched unless the cluster exists, every image is on the
/// host engine ([`Error::ImportImageMissing`]), the filter selects running
/// servers or agents, and (without a filter) the cluster has its images
/// volume. A node whose import fails makes the whole call fail with
/// [`Error::ImportFailed`], after every other node was tried.
pub(crate) async fn import_images(
    docker: &Docker,
    cluster: &str,
    images: &[String],
    options: &ImportOptions,
) -> Result<Imported> {
    let started = Instant::now();
    let mut seen = HashSet::new();
    let images: Vec<String> = images
        .iter()
        .filter(|i| seen.insert(i.as_str()))
        .cloned()
        .collect();
    if images.is_empty() {
        return Err(Error::invalid(
            "image import",
            "names no image",
            "name at least one image on the host engine",
        ));
    }
    if let Some(bad) = images.iter().find(|i| i.trim().is_empty()) {
        return Err(Error::invalid(
            format!("image {bad:?}"),
            "is empty",
            "name an image on the host engine",
        ));
    }
    let volume = images_volume_name(cluster);
    let containers = dockerx::containers(
        docker,
        dockerx::label_filters(&[(labels::CLUSTER, cluster)]),
    )
    .await?;
    if containers.is_empty() {
        return Err(Error::ClusterNotFound {
            name: cluster.to_owned(),
        });
    }
    let (inspected, has_volume) = tokio::try_join!(
        inspect_images(docker, &images),
        volume_exists(docker, &volume)
    )?;
    let nodes = k3s_nodes(&containers, &volume);
    let plan = plan_import(cluster, &nodes, options.nodes.as_ref(), has_volume)?;
    let estimate: u64 = inspected.iter().map(|(_, size)| size).sum();
    let images_found: Vec<ImportedImage> = inspected.into_iter().map(|(i, _)| i).collect();
    let name = archive_name(&images);

    let exported_at = Instant::now();
    let archive = export(docker, &images, estimate).await?;
    emit(
        &options.progress,
        Event::ImagesExported {
            images: images.clone(),
            bytes: archive.size,
            elapsed: exported_at.elapsed(),
        },
    );

    let shared_path = format!("{IMAGES_DIR}/{name}");
    if let Some(via) = &plan.via {
        let at = Instant::now();
        archive.upload(docker, via, IMAGES_DIR, &name).await?;
        emit(
            &options.progress,
            Event::ImagesCopied {
                to: format!("volume {volume}"),
                bytes: archive.size,
                elapsed: at.elapsed(),
            },
        );
    }
    for n in &plan.next_start {
        emit(
            &options.progress,
            Event::ImportAtNextStart {
                node: n.name.clone(),
            },
        );
    }

    // Each running node: from the volume, or streamed to its stdin.
    let jobs = plan
        .from_volume
        .iter()
        .map(|n| (n, false))
        .chain(plan.direct.iter().map(|n| (n, true)));
    let archive = &archive;
    let results: Vec<(String, Result<Duration>)> = stream::iter(jobs)
        .map(|(node, direct)| {
            let shared_path = &shared_path;
            async move {
                let at = Instant::now();
                let result = if direct {
                    import_direct(docker, archive, &node.name).await
                } else {
                    ctr_import(docker, &node.name, shared_path, None, archive.size).await
                };
                if result.is_ok() {
                    emit(
                        &options.progress,
                        Event::ImagesImported {
                            node: node.name.clone(),
                            elapsed: at.elapsed(),
                        },
                    );
                }
                (node.name.clone(), result.map(|()| at.elapsed()))
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;

    let mut failures = Vec::new();
    let mut imported = Vec::new();
    let mut report = Vec::new();
    let mut results: HashMap<String, Result<Duration>> = results.into_iter().collect();
    for node in plan.nodes() {
        let when = if plan.next_start.contains(node) {
            ImportWhen::NextStart
        } else {
            ImportWhen::Now
        };
        let mut elapsed = None;
        match results.remove(&node.name) {
            Some(Ok(d)) => {
                elapsed = Some(d);
                imported.push(node.name.clone());
            }
            Some(Err(e)) => failures.push((node.name.clone(), e)),
            None => {}
        }
        report.push(NodeImport {
            name: node.name.clone(),
            role: node.role,
            when,
            elapsed,
        });
    }
    if !failures.is_empty() {
        let mut note = Vec::new();
        if !imported.is_empty() {
            note.push(format!("imported on {}", imported.join(", ")));
        }
        if plan.via.is_some() {
            note.push(format!(
                "the archive stays in the images volume as {shared_path}, so nodes import it at \
                 their next start"
            ));
        }
        return Err(Error::ImportFailed {
            failures,
            note: note.join("; "),
        });
    }
    Ok(Imported {
        cluster: cluster.to_owned(),
        images: images_found,
        bytes: archive.size,
        archive: plan.via.as_ref().map(|_| shared_path.clone()),
        nodes: report,
        elapsed: started.elapsed(),
    })
}

/// Streams the archive into `k3s ctr images import -` in `node`.
async fn import_direct(docker: &Docker, archive: &Archive, node: &str) -> Result<()> {
    let body = archive.body()?;
    ctr_import(docker, node, "-", Some(body.boxed()), archive.size).await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Read;

    use bollard::models::{ContainerSummaryStateEnum, MountPoint};

    use super::*;

    #[test]
    fn archive_names_depend_on_the_set_of_names_only() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let name = archive_name(&names(&["a:1", "b:1"]));
        assert!(
            name.starts_with("topgun-") && name.ends_with(".tar"),
            "{name}"
        );
        assert_eq!(name.len(), "topgun-".len() + 12 + ".tar".len());
        assert_eq!(name, archive_name(&names(&["b:1", "a:1", "b:1"])));
        assert_ne!(name, archive_name(&names(&["a:1"])));
        assert_ne!(name, archive_name(&names(&["a:1", "b:2"])));
        // Not fooled by names that join to the same text.
        assert_ne!(
            archive_name(&names(&["a", "b"])),
            archive_name(&names(&["a\nb"]))
        );
    }

    #[test]
    fn step_limits_grow_with_size() {
        assert_eq!(step_limit(0), Duration::from_secs(60));
        assert_eq!(step_limit(1), Duration::from_secs(70));
        assert_eq!(step_limit(100_000_000), Duration::from_secs(70));
        assert_eq!(step_limit(100_000_001), Duration::from_secs(80));
        assert_eq!(step_limit(2_000_000_000), Duration::from_secs(260));
    }

    /// The streamed upload (header, file body in pieces, trailer) is a
    /// valid tar that holds exactly the file, whatever its size.
    #[tokio::test]
    async fn streamed_tar_frames_the_file() {
        for size in [0usize, 1, 511, 512, 513, 64 * 1024, 64 * 1024 + 7, 200_000] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let mut file = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut file, &data).unwrap();
            let archive = Archive {
                file,
                size: size as u64,
            };
            let pieces: Vec<Bytes> = archive
                .tar_stream("topgun-0123456789ab.tar")
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
                .await;
            // Never more than one piece of the file in memory.
            assert!(pieces.iter().all(|p| p.len() as u64 <= CHUNK));
            let tar_bytes: Vec<u8> = pieces.concat();
            // Header, body padded to whole blocks, two zero blocks.
            assert_eq!(tar_bytes.len(), 512 + size.div_ceil(512) * 512 + 1024);
            assert!(tar_bytes[512 + size..].iter().all(|b| *b == 0));
            let mut tar = tar::Archive::new(tar_bytes.as_slice());
            let mut entries = tar.entries().unwrap();
            let mut entry = entries.next().unwrap().unwrap();
            assert!(entry.header().entry_type().is_file());
            assert_eq!(
                entry.path().unwrap().to_str(),
                Some("topgun-0123456789ab.tar")
            );
            assert_eq!(entry.header().mode().unwrap(), 0o644);
            assert_eq!(entry.header().uid().unwrap(), 0);
            assert_eq!(entry.header().size().unwrap(), size as u64);
            let mut got = Vec::new();
            entry.read_to_end(&mut got).unwrap();
            assert_eq!(got, data, "size {size}");
            drop(entry);
            assert!(entries.next().is_none());
            // The raw body (for `ctr images import -`) is the file itself.
            let body: Vec<Bytes> = archive.body().unwrap().map(|r| r.unwrap()).collect().await;
            assert_eq!(body.concat(), data);
        }
    }

    #[test]
    fn trailers_pad_to_whole_blocks_and_end_the_archive() {
        assert_eq!(tar_trailer(0).len(), 1024);
        assert_eq!(tar_trailer(1).len(), 511 + 1024);
        assert_eq!(tar_trailer(10).len(), 502 + 1024);
        assert_eq!(tar_trailer(512).len(), 1024);
        assert_eq!(tar_trailer(513).len(), 511 + 1024);
        // Sizes past ustar's 8 GiB limit still get a header (GNU binary size).
        let header = tar_header("big.tar", 10 << 30, 0).unwrap();
        assert_eq!(header.len(), 512);
        let parsed = tar::Header::from_byte_slice(&header);
        assert_eq!(parsed.size().unwrap(), 10 << 30);
        assert!(tar_header(&"x".repeat(200), 1, 0).is_err());
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error_not_a_short_entry() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"short").unwrap();
        let archive = Archive { file, size: 100 };
        let results: Vec<io::Result<Bytes>> = archive.tar_stream("x.tar").unwrap().collect().await;
        assert!(results.iter().any(|r| r.is_err()));
    }

    fn node(role: Role, index: u32, running: bool, mounts_volume: bool) -> Node {
        Node {
            name: format!("topgun-c-{role}-{index}"),
            role,
            index,
            running,
            mounts_volume,
        }
    }

    fn names(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn without_a_filter_running_nodes_import_now_and_stopped_ones_at_next_start() {
        let nodes = [
            node(Role::Server, 0, false, true),
            node(Role::Server, 1, true, true),
            node(Role::Agent, 0, true, true),
            node(Role::Agent, 2, false, true),
        ];
        let plan = plan_import("c", &nodes, None, true).unwrap();
        assert_eq!(plan.via.as_deref(), Some("topgun-c-server-1"));
        assert_eq!(
            names(&plan.from_volume),
            ["topgun-c-server-1", "topgun-c-agent-0"]
        );
        assert_eq!(
            names(&plan.next_start),
            ["topgun-c-server-0", "topgun-c-agent-2"]
        );
        assert!(plan.direct.is_empty());
        // A cluster whose nodes all stopped still gets the archive.
        let stopped = [node(Role::Server, 0, false, true)];
        let plan = plan_import("c", &stopped, None, true).unwrap();
        assert_eq!(plan.via.as_deref(), Some("topgun-c-server-0"));
        assert_eq!(names(&plan.next_start), ["topgun-c-server-0"]);
    }

    #[test]
    fn without_the_images_volume_only_a_filter_works() {
        let nodes = [node(Role::Server, 0, true, false)];
        let err = plan_import("c", &nodes, None, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("older topgun"), "{err}");
        assert!(err.contains("topgun-c-images"), "{err}");
        assert!(err.contains("--nodes all"), "{err}");
        let all = NodeFilter::parse("all").unwrap();
        let plan = plan_import("c", &nodes, Some(&all), false).unwrap();
        assert_eq!(names(&plan.direct), ["topgun-c-server-0"]);
        assert_eq!(plan.via, None);
        // A running node that lacks the mount gets its own copy; a stopped
        // one cannot get it at all.
        let mixed = [
            node(Role::Server, 0, true, true),
            node(Role::Agent, 0, true, false),
        ];
        let plan = plan_import("c", &mixed, None, true).unwrap();
        assert_eq!(names(&plan.direct), ["topgun-c-agent-0"]);
        assert_eq!(names(&plan.from_volume), ["topgun-c-server-0"]);
        let stuck = [
            node(Role::Server, 0, true, true),
            node(Role::Agent, 0, false, false),
        ];
        let err = plan_import("c", &stuck, None, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("topgun-c-agent-0"), "{err}");
    }

    #[test]
    fn a_filter_selects_existing_running_k3s_nodes_only() {
        let nodes = [
            node(Role::Server, 0, true, true),
            node(Role::Agent, 0, true, true),
            node(Role::Agent, 2, true, true),
            node(Role::Agent, 3, false, true),
        ];
        let plan = |f: &str| plan_import("c", &nodes, Some(&NodeFilter::parse(f).unwrap()), true);
        let p = plan("agent:0-2").unwrap();
        assert_eq!(names(&p.direct), ["topgun-c-agent-0", "topgun-c-agent-2"]);
        assert_eq!(p.via, None);
        assert!(p.from_volume.is_empty() && p.next_start.is_empty());
        let p = plan("server:*;agent:2").unwrap();
        assert_eq!(names(&p.direct), ["topgun-c-server-0", "topgun-c-agent-2"]);
        // A stopped selected node refuses the whole import.
        let err = plan("agent:*").unwrap_err().to_string();
        assert!(err.contains("topgun-c-agent-3"), "{err}");
        assert!(err.contains("nothing was imported"), "{err}");
        // Index 1 was deleted: it matches nothing.
        let err = plan("agent:1").unwrap_err().to_string();
        assert!(err.contains("matches no k3s node"), "{err}");
        // Out of range, or not a k3s node.
        assert!(plan("agent:4").is_err());
        assert!(plan("server:1").is_err());
        assert!(plan("etcd:*").is_err());
        assert!(plan("loadbalancer").is_err());
        assert!(plan_import("c", &[], None, true).is_err());
    }

    #[test]
    fn k3s_nodes_come_from_labels_and_mounts() {
        let summary =
            |name: &str, role: &str, index: &str, state, mount: Option<&str>| ContainerSummary {
                names: Some(vec![format!("/{name}")]),
                labels: Some(HashMap::from([
                    (labels::ROLE.to_owned(), role.to_owned()),
                    (labels::INDEX.to_owned(), index.to_owned()),
                ])),
                state: Some(state),
                mounts: Some(
                    mount
                        .map(|v| MountPoint {
                            name: Some(v.to_owned()),
                            destination: Some(IMAGES_DIR.to_owned()),
                            ..Default::default()
                        })
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            };
        let containers = [
            summary(
                "a1",
                "agent",
                "1",
                ContainerSummaryStateEnum::RUNNING,
                Some("topgun-c-images"),
            ),
            summary("e0", "etcd", "0", ContainerSummaryStateEnum::RUNNING, None),
            summary(
                "s0",
                "server",
                "0",
                ContainerSummaryStateEnum::EXITED,
                Some("other"),
            ),
            summary(
                "lb",
                "loadbalancer",
                "0",
                ContainerSummaryStateEnum::RUNNING,
                None,
            ),
        ];
        let nodes = k3s_nodes(&containers, "topgun-c-images");
        assert_eq!(
            nodes,
            [
                Node {
                    name: "s0".to_owned(),
                    role: Role::Server,
                    index: 0,
                    running: false,
                    mounts_volume: false,
                },
                Node {
                    name: "a1".to_owned(),
                    role: Role::Agent,
                    index: 1,
                    running: true,
                    mounts_volume: true,
                },
            ]
        );
    }
}
