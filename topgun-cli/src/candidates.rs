//! The names completion offers, from Docker labels: clusters, nodes and
//! registries, asked of the engine chosen on the line being completed, with
//! a short deadline. Whatever fails (no engine, a slow one, a bad
//! selection) completes to nothing, and nothing reaches the shell.

use std::time::Duration;

use clap_complete::CompletionCandidate;

/// How long a completion may wait for Docker before it offers no names.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(1);

/// Candidates for a cluster-name argument: every cluster on the engine, with
/// its state as the description.
pub fn clusters() -> Vec<CompletionCandidate> {
    lookup(async {
        let docker = topgun_core::connect().await?;
        let clusters = topgun_core::Cluster::list(&docker).await?;
        Ok(clusters
            .into_iter()
            .map(|c| CompletionCandidate::new(c.name).help(Some(c.state.into())))
            .collect())
    })
}

/// Candidates for a registry-name argument: every registry topgun made on
/// the engine.
pub fn registries() -> Vec<CompletionCandidate> {
    lookup(async {
        let docker = topgun_core::connect().await?;
        let registries = topgun_core::Registry::list(&docker).await?;
        Ok(registries
            .into_iter()
            .map(|r| CompletionCandidate::new(r.name).help(Some(r.image.into())))
            .collect())
    })
}

/// Candidates for a node-name argument: the container names of every
/// cluster's nodes, with role and state as the description.
pub fn nodes() -> Vec<CompletionCandidate> {
    lookup(async {
        let docker = topgun_core::connect().await?;
        let clusters = topgun_core::Cluster::list(&docker).await?;
        let mut asks = tokio::task::JoinSet::new();
        for cluster in clusters {
            let handle = topgun_core::Cluster::named(docker.clone(), &cluster.name);
            asks.spawn(async move {
                let nodes = handle.nodes().await;
                (cluster.name, nodes)
            });
        }
        let mut candidates = Vec::new();
        for (cluster, nodes) in asks.join_all().await {
            // A cluster that is only leftovers has no nodes: nothing to add.
            for node in nodes.into_iter().flatten() {
                let help = format!("{} of {cluster}, {}", node.role, node.state);
                candidates.push(CompletionCandidate::new(node.name).help(Some(help.into())));
            }
        }
        candidates.sort_by(|a, b| a.get_value().cmp(b.get_value()));
        Ok(candidates)
    })
}

/// Runs a Docker lookup for a completion: the engine chosen on the line being
/// completed, a deadline, and no names (and no output) on any failure.
fn lookup(
    ask: impl Future<Output = topgun_core::Result<Vec<CompletionCandidate>>>,
) -> Vec<CompletionCandidate> {
    topgun_core::select_engine(engine_flags(std::env::args().skip(1)));
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    // Whatever happens, nothing may reach the shell: not even a panic's
    // message.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async { tokio::time::timeout(LOOKUP_DEADLINE, ask).await })
    }));
    std::panic::set_hook(hook);
    // Do not wait for work the deadline cut short (an ssh session, a dial).
    runtime.shutdown_background();
    match found {
        Ok(Ok(Ok(candidates))) => candidates,
        _ => Vec::new(),
    }
}

/// `--engine` and `--context` as given on the command line being completed
/// (the words after `--`, as the completion script passes them).
fn engine_flags(args: impl Iterator<Item = String>) -> topgun_core::EngineFlags {
    let mut flags = topgun_core::EngineFlags::default();
    let mut words = args.skip_while(|a| a != "--").skip(1);
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        for (name, slot) in [
            ("--engine", &mut flags.engine),
            ("--context", &mut flags.context),
        ] {
            if word == name {
                *slot = words.next().filter(|v| !v.is_empty());
                break;
            }
            if let Some(value) = word.strip_prefix(name).and_then(|w| w.strip_prefix('=')) {
                *slot = Some(value.to_owned()).filter(|v| !v.is_empty());
                break;
            }
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(line: &str) -> topgun_core::EngineFlags {
        engine_flags(line.split(' ').map(str::to_owned))
    }

    #[test]
    fn engine_flags_come_from_the_completed_line() {
        let f = flags("-- topgun --engine tcp://h:2375 status d");
        assert_eq!(f.engine.as_deref(), Some("tcp://h:2375"));
        assert_eq!(f.context, None);
        let f = flags("-- topgun --context=alien node stop ");
        assert_eq!(f.context.as_deref(), Some("alien"));
        assert_eq!(f.engine, None);
        // The word being completed is not a value yet.
        let f = flags("-- topgun --engine ");
        assert_eq!(f.engine, None);
        // Words before `--` are the completer's own.
        assert_eq!(flags("--engine x -- topgun list"), Default::default());
    }
}
