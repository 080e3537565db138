//! Shell completion in a real bash, and the man pages, through the built
//! `topgun` binary.
//!
//! Each completion test loads the script `topgun completions bash` prints
//! into `bash --norc --noprofile`, sets COMP_WORDS, COMP_CWORD, COMP_LINE and
//! COMP_POINT as bash does for a TAB, calls the function the script
//! registered for `topgun`, and reads COMPREPLY. The name tests use the
//! Docker engine, and for a node container (created, never started) an
//! image of `cargo xtask images` or `$TOPGUN_K3S_IMAGE`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use topgun_core::bollard::Docker;
use topgun_core::bollard::models::{ContainerCreateBody, VolumeCreateRequest};
use topgun_core::bollard::query_parameters::{
    CreateContainerOptions, ListImagesOptions, RemoveContainerOptions, RemoveVolumeOptions,
};

const TOPGUN: &str = env!("CARGO_BIN_EXE_topgun");

/// What a TAB at the end of `line` offers, and bash's stderr.
struct Completed {
    words: Vec<String>,
    stderr: String,
    took: Duration,
}

/// `topgun completions bash`, written to a file in `dir`.
fn bash_script(dir: &Path) -> std::path::PathBuf {
    let out = Command::new(TOPGUN)
        .args(["completions", "bash"])
        .env_remove("TOPGUN_COMPLETE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let path = dir.join("topgun.bash");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// Completes `line` (the cursor at its end) in bash with `env` set.
fn complete(line: &str, env: &[(&str, &str)]) -> Completed {
    let dir = tempfile::tempdir().unwrap();
    let script = bash_script(dir.path());
    // COMP_WORDS as bash splits the line; a trailing blank starts an empty word.
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if line.ends_with(' ') {
        words.push("");
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let current = words[cword];
    let previous = if cword > 0 { words[cword - 1] } else { "" };
    let driver = format!(
        r#"source '{script}' || exit 97
registered=$(complete -p topgun) || exit 98
function=${{registered##* -F }}
function=${{function%% *}}
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
"$function" topgun '{current}' '{previous}'
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = script.display(),
        words = quoted.join(" "),
    );
    let start = Instant::now();
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &driver])
        .env_remove("TOPGUN_COMPLETE")
        .env_remove("DOCKER_CONTEXT")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{out:?}");
    Completed {
        words: String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    }
}

#[test]
fn bash_completes_subcommands() {
    let c = complete("topgun st", &[]);
    for expected in ["start", "status", "stop"] {
        assert!(c.words.iter().any(|w| w == expected), "{:?}", c.words);
    }
    assert!(!c.words.iter().any(|w| w == "create"), "{:?}", c.words);
    assert!(c.stderr.is_empty(), "{}", c.stderr);

    let c = complete("topgun node re", &[]);
    assert_eq!(c.words, ["restart"]);
}

#[test]
fn bash_completes_flags() {
    let c = complete("topgun create --ser", &[]);
    assert_eq!(c.words, ["--servers"]);
    let c = complete("topgun create demo --datastore ", &[]);
    assert_eq!(c.words, ["embedded", "etcd"]);
}

/// Without an engine, a name completes to nothing: no error text in the
/// shell, and no waiting.
#[test]
fn names_without_docker_complete_to_nothing_quickly() {
    let nowhere = [("DOCKER_HOST", "unix:///nonexistent/topgun-test/docker.sock")];
    for line in [
        "topgun status ",
        "topgun status d",
        "topgun node stop topgun-",
        "topgun image import x --cluster ",
    ] {
        let c = complete(line, &nowhere);
        // With no name to offer, an empty word gets the flags.
        assert!(
            c.words.iter().all(|w| w.starts_with("--")),
            "{line}: {:?}",
            c.words
        );
        assert!(c.stderr.is_empty(), "{line}: {}", c.stderr);
        assert!(c.took < Duration::from_secs(3), "{line}: {:?}", c.took);
    }
    // An engine named on the line is the one asked.
    let c = complete(
        "topgun --engine unix:///nonexistent/topgun-test/docker.sock delete ",
        &[],
    );
    assert!(c.words.iter().all(|w| w.starts_with("--")), "{:?}", c.words);
    assert!(c.stderr.is_empty(), "{}", c.stderr);
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Removes what the test made, even when an assertion failed.
struct Made {
    docker: Docker,
    container: Option<String>,
    volume: Option<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        block_on(async {
            if let Some(container) = &self.container {
                let force = RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                };
                let _ = self.docker.remove_container(container, Some(force)).await;
            }
            if let Some(volume) = &self.volume {
                let _ = self
                    .docker
                    .remove_volume(volume, None::<RemoveVolumeOptions>)
                    .await;
            }
        });
    }
}

/// An image on this engine to make a container from (it never starts):
/// `$TOPGUN_K3S_IMAGE`, else one of the local images `cargo xtask images`
/// builds.
async fn local_image(docker: &Docker) -> String {
    if let Ok(image) = std::env::var("TOPGUN_K3S_IMAGE")
        && !image.is_empty()
    {
        return image;
    }
    let images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec!["dev.topgun.image".to_owned()],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap();
    images
        .iter()
        .find_map(|i| i.repo_tags.first().cloned())
        .expect("no local image: run `cargo xtask images` (or set TOPGUN_K3S_IMAGE)")
}

/// Names come from Docker's labels: a cluster made of a labelled volume and
/// a node container (created, never started) completes wherever a cluster
/// or a node is asked for.
#[test]
fn names_come_from_docker_labels() {
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let cluster = format!("cmpl{run}");
    let docker = block_on(topgun_core::connect()).expect("Docker must be reachable for this test");
    let mut made = Made {
        docker: docker.clone(),
        container: None,
        volume: None,
    };
    let labels = |more: &[(&str, &str)]| {
        let mut labels = HashMap::from([
            ("dev.topgun.cluster".to_owned(), cluster.clone()),
            (
                "dev.topgun.run".to_owned(),
                format!("completions-test-{run}"),
            ),
        ]);
        labels.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        labels
    };
    let volume = format!("topgun-{cluster}-completions-test");
    block_on(docker.create_volume(VolumeCreateRequest {
        name: Some(volume.clone()),
        labels: Some(labels(&[])),
        ..Default::default()
    }))
    .unwrap();
    made.volume = Some(volume);

    for line in [
        format!("topgun status cmpl{run}"),
        format!("topgun etcd status cmpl{}", &run[..5]),
        format!("topgun node list cmpl{run}"),
        format!("topgun image import x -c cmpl{run}"),
        format!("topgun --quiet stop demo cmpl{run}"),
    ] {
        let c = complete(&line, &[]);
        assert_eq!(c.words, [cluster.as_str()], "{line}");
        assert!(c.stderr.is_empty(), "{line}: {}", c.stderr);
    }
    // Node names are containers: a cluster of leftovers has none.
    let c = complete(&format!("topgun node stop topgun-{cluster}"), &[]);
    assert!(c.words.is_empty(), "{:?}", c.words);

    let node = format!("topgun-{cluster}-agent-0");
    let image = block_on(local_image(&docker));
    block_on(docker.create_container(
        Some(CreateContainerOptions {
            name: Some(node.clone()),
            ..Default::default()
        }),
        ContainerCreateBody {
            image: Some(image),
            labels: Some(labels(&[
                ("dev.topgun.role", "agent"),
                ("dev.topgun.index", "0"),
            ])),
            ..Default::default()
        },
    ))
    .unwrap();
    made.container = Some(node.clone());
    for line in [
        format!("topgun node stop topgun-{cluster}"),
        format!("topgun node restart topgun-demo-agent-0 topgun-{cluster}-a"),
    ] {
        let c = complete(&line, &[]);
        assert_eq!(c.words, [node.as_str()], "{line}");
        assert!(c.stderr.is_empty(), "{line}: {}", c.stderr);
    }
}

#[test]
fn man_pages_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(TOPGUN)
        .arg("__man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let read = |page: &str| {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        // roff escapes hyphens; a reader sees them plain.
        text.replace("\\-", "-")
    };
    let top = read("topgun.1");
    assert!(top.contains(".TH topgun 1"), "{top}");
    assert!(top.contains("topgun-create(1)"), "{top}");
    let create = read("topgun-create.1");
    assert!(create.contains("--servers"), "{create}");
    assert!(create.contains(".SH EXAMPLES"), "{create}");
    assert!(
        create.contains("topgun create demo --servers 3 --agents 2 --datastore etcd"),
        "{create}"
    );
    for page in [
        "topgun-node-add.1",
        "topgun-kubeconfig-merge.1",
        "topgun-completions.1",
    ] {
        assert!(!read(page).is_empty(), "{page}");
    }
    // The hidden command has no page.
    assert!(!dir.path().join("topgun-__man.1").exists());
}
