//! The "Examples:" section at the end of every command's help, kubectl style.
//!
//! Each example line is parsed by the real command line in the tests below,
//! so an example that names a flag that does not exist fails the build.

use std::fmt::Write as _;

use clap::builder::StyledStr;
use clap::builder::styling::Style;

/// `text` under an "Examples:" heading styled as clap styles its own
/// headings, each line indented as clap indents its options.
pub fn examples(text: &str) -> StyledStr {
    let heading = Style::new().bold().underline();
    let mut styled = StyledStr::new();
    let _ = write!(styled, "{heading}Examples:{heading:#}");
    for line in text.lines().map(str::trim) {
        let indent = if line.is_empty() { "" } else { "  " };
        let _ = write!(styled, "\n{indent}{line}");
    }
    styled
}

/// `topgun`.
pub const TOPGUN: &str = "\
# The demo cluster: 3 servers, 2 agents, a 3-member etcd with mutual TLS
topgun create demo --servers 3 --agents 2 --datastore etcd

# Every cluster on this Docker engine
topgun list

# The nodes of a cluster, on a remote engine
topgun --engine ssh://me@build-box node list demo";

/// `topgun create`.
pub const CREATE: &str = "\
# The demo cluster: 3 servers, 2 agents, a 3-member etcd with mutual TLS
topgun create demo --servers 3 --agents 2 --datastore etcd

# One server, the API on port 6550 and reachable as 192.168.1.28 from the LAN
topgun create dev --api-port 0.0.0.0:6550 --tls-san 192.168.1.28

# From a topgun or k3d config file, pulling through a local registry
topgun create --config k3d.yaml --registry-use registry.localhost:5001";

/// `topgun delete`.
pub const DELETE: &str = "\
# Delete one cluster: containers, volumes, network, kubeconfig entries
topgun delete demo

# Delete every topgun cluster on this engine
topgun delete --all";

/// `topgun stop`.
pub const STOP: &str = "\
# Stop a cluster (agents, load balancer, servers, then etcd)
topgun stop demo

# Stop every topgun cluster on this engine
topgun stop --all";

/// `topgun start`.
pub const START: &str = "\
# Start a stopped cluster and wait for its API
topgun start demo

# Start two clusters, giving each phase up to 3 minutes
topgun start demo dev --timeout 3m";

/// `topgun restart`.
pub const RESTART: &str = "\
# Stop, then start a cluster
topgun restart demo

# Restart with more time for each phase, as JSON
topgun restart demo --timeout 5m -o json";

/// `topgun list`.
pub const LIST: &str = "\
# The clusters on this engine, with their state
topgun list

# As JSON
topgun list -o json

# Ask every docker context's engine
topgun list --all-contexts";

/// `topgun status`.
pub const STATUS: &str = "\
# Nodes, load balancer, etcd verdict, API and kubeconfig of a cluster
topgun status demo

# As JSON
topgun status demo -o json";

/// `topgun kubeconfig`.
pub const KUBECONFIG: &str = "\
# Write a cluster's kubeconfig to a file of its own
topgun kubeconfig get demo > demo.yaml

# Merge it into ~/.kube/config and make it the current context
topgun kubeconfig merge demo --switch-context";

/// `topgun kubeconfig get`.
pub const KUBECONFIG_GET: &str = "\
# Print a cluster's kubeconfig
topgun kubeconfig get demo

# Use it for one kubectl command
topgun kubeconfig get demo > demo.yaml && kubectl --kubeconfig demo.yaml get nodes";

/// `topgun kubeconfig merge`.
pub const KUBECONFIG_MERGE: &str = "\
# Merge into $KUBECONFIG or ~/.kube/config
topgun kubeconfig merge demo

# Merge into another file and make it the current context there
topgun kubeconfig merge demo --kubeconfig ~/.kube/topgun --switch-context";

/// `topgun tls`.
pub const TLS: &str = "\
# A CA and certificates for a name and an address
topgun tls gen --out certs --san demo.example.com,192.168.1.28

# Does the API's certificate cover the address clients dial?
topgun tls inspect 127.0.0.1:6443 --name 192.168.1.28";

/// `topgun tls gen`.
pub const TLS_GEN: &str = "\
# A new CA, then server, peer and client certificates
topgun tls gen --out certs --san demo.example.com,192.168.1.28

# Signed by your own CA, valid for 90 days
topgun tls gen --out certs --san etcd-0,10.0.0.2 --ca-cert ca.crt --ca-key ca.key --days 90";

/// `topgun tls inspect`.
pub const TLS_INSPECT: &str = "\
# A live endpoint, checked for the name clients dial
topgun tls inspect 127.0.0.1:6443 --name 192.168.1.28

# Verified against a CA
topgun tls inspect https://demo.example.com:6443 --ca ca.crt

# A certificate file
topgun tls inspect certs/server.crt";

/// `topgun tls check-kubeconfig`.
pub const TLS_CHECK_KUBECONFIG: &str = "\
# Would kubectl connect with the current context?
topgun tls check-kubeconfig

# Another context, dialling the address a remote client would use
topgun tls check-kubeconfig --context topgun-demo --connect-to 192.168.1.28";

/// `topgun etcd`.
pub const ETCD: &str = "\
# Health, leader and verdict of a cluster's etcd
topgun etcd status demo

# The keys k3s keeps for pods
topgun etcd keys demo --prefix /registry/pods/";

/// `topgun etcd status`.
pub const ETCD_STATUS: &str = "\
# Ask every member of the demo cluster's etcd
topgun etcd status demo

# Keep watching, and prove the cluster takes writes
topgun etcd status demo --watch --probe

# An etcd that topgun did not make
topgun etcd status --endpoints https://10.0.0.2:2379,https://10.0.0.3:2379 --cacert ca.crt --cert client.crt --key client.key";

/// `topgun etcd keys`.
pub const ETCD_KEYS: &str = "\
# Keys and counts by prefix
topgun etcd keys demo

# At most 20 pod keys, counted three segments deep
topgun etcd keys demo --prefix /registry/pods/ --limit 20 --depth 3";

/// `topgun etcd browse`.
pub const ETCD_BROWSE: &str = "\
# Browse the demo cluster's etcd in the default browser
topgun etcd browse demo --open

# On a fixed port, with put and delete allowed
topgun etcd browse demo --listen 127.0.0.1:8080 --write";

/// `topgun image`.
pub const IMAGE: &str = "\
# Copy an image you built into every node of a cluster
topgun image import myapp:dev --cluster demo

# Two images, only into the running agents
topgun image import myapp:dev redis:7 -c demo --nodes 'agent:*'";

/// `topgun image import`.
pub const IMAGE_IMPORT: &str = "\
# Every node, now or at its next start
topgun image import myapp:dev --cluster demo

# Two images, only into the running agents
topgun image import myapp:dev redis:7 -c demo --nodes 'agent:*'";

/// `topgun node`.
pub const NODE: &str = "\
# A cluster's nodes
topgun node list demo

# Two more agents
topgun node add demo --role agent --count 2";

/// `topgun node list`.
pub const NODE_LIST: &str = "\
# Name, role, state, address and image of every node
topgun node list demo

# As JSON
topgun node list demo -o json";

/// `topgun node add`.
pub const NODE_ADD: &str = "\
# One more agent
topgun node add demo --role agent

# Two more servers, each given 3 minutes to be ready
topgun node add demo --role server --count 2 --timeout 3m";

/// `topgun node delete`.
pub const NODE_DELETE: &str = "\
# Delete an agent
topgun node delete topgun-demo-agent-1

# Delete a server and an agent
topgun node delete topgun-demo-server-2 topgun-demo-agent-0";

/// `topgun node stop`.
pub const NODE_STOP: &str = "\
# Stop an agent
topgun node stop topgun-demo-agent-0

# Stop a server and an agent
topgun node stop topgun-demo-server-2 topgun-demo-agent-1";

/// `topgun node start`.
pub const NODE_START: &str = "\
# Start a stopped agent and wait until it is ready
topgun node start topgun-demo-agent-0

# Start a server, giving it 3 minutes
topgun node start topgun-demo-server-2 --timeout 3m";

/// `topgun node restart`.
pub const NODE_RESTART: &str = "\
# Restart an agent
topgun node restart topgun-demo-agent-0

# Restart two servers, one after the other in start order
topgun node restart topgun-demo-server-1 topgun-demo-server-2 --timeout 3m";

/// `topgun completions`.
pub const COMPLETIONS: &str = "\
# bash: this shell; add the line to ~/.bashrc for every shell
source <(topgun completions bash)

# zsh: add to ~/.zshrc, after compinit
source <(topgun completions zsh)

# fish
topgun completions fish > ~/.config/fish/completions/topgun.fish";

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Splits a shell command line into words: blanks separate, single and
    /// double quotes group (enough for the examples, which use no escapes).
    fn words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.get_or_insert_default().push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    word.get_or_insert_default();
                }
                (None, c) if c.is_whitespace() => words.extend(word.take()),
                (None, c) => word.get_or_insert_default().push(c),
            }
        }
        assert!(quote.is_none(), "unclosed quote in {line:?}");
        words.extend(word);
        words
    }

    /// The topgun invocation in an example line: from `topgun ` to the end
    /// of its command (a `)`, redirection, pipe or `&&`).
    fn invocation(line: &str) -> Option<&str> {
        let start = line.find("topgun ")?;
        let rest = &line[start..];
        let end = [")", " >", " |", " &&", " ;"]
            .iter()
            .filter_map(|stop| rest.find(stop))
            .min()
            .unwrap_or(rest.len());
        Some(rest[..end].trim_end())
    }

    /// Every command, depth first, with its path (`["node", "add"]`).
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let mut path = path.clone();
            path.push(sub.get_name().to_owned());
            walk(sub, path, out);
        }
    }

    /// Every visible command ends its help with two or three examples, and
    /// each parses with the real command line and runs the command whose
    /// help shows it.
    #[test]
    fn every_command_has_examples_that_parse() {
        let root = crate::cli::Cli::command();
        let mut commands = Vec::new();
        walk(&root, Vec::new(), &mut commands);
        assert!(commands.len() >= 29, "{} commands", commands.len());
        let mut checked = 0;
        for (path, cmd) in commands {
            let name = format!("topgun {}", path.join(" "));
            let help = cmd
                .get_after_help()
                .unwrap_or_else(|| panic!("`{name}` has no examples"))
                .to_string();
            assert!(help.starts_with("Examples:\n"), "`{name}`: {help:?}");
            let mut count = 0;
            for line in help.lines().skip(1).map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let invocation = invocation(line)
                    .unwrap_or_else(|| panic!("`{name}` example without topgun: {line:?}"));
                let argv = words(invocation);
                if let Err(e) = crate::cli::Cli::command().try_get_matches_from(&argv) {
                    panic!("`{name}` example {line:?} does not parse:\n{e}");
                }
                // The words after the global options name this command.
                let mut args = argv.iter().skip(1).peekable();
                while args.next_if(|a| a.starts_with('-')).is_some() {
                    args.next();
                }
                let named: Vec<&String> = args.take(path.len()).collect();
                assert_eq!(named, path.iter().collect::<Vec<_>>(), "{line:?}");
                count += 1;
            }
            assert!((2..=3).contains(&count), "`{name}` has {count} examples");
            checked += count;
        }
        assert!(checked >= 58, "{checked} examples");
    }

    #[test]
    fn splitting_and_cutting() {
        assert_eq!(words("a 'b *' \"c d\"e"), ["a", "b *", "c de"]);
        assert_eq!(
            invocation("source <(topgun completions bash)"),
            Some("topgun completions bash")
        );
        assert_eq!(
            invocation("topgun kubeconfig get demo > x && kubectl"),
            Some("topgun kubeconfig get demo")
        );
        assert_eq!(invocation("kubectl get nodes"), None);
    }
}
