//! `topgun tls ...` arguments.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::OutputFormat;

/// Arguments of `topgun tls`.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TlsCommand,
}

/// The `topgun tls` subcommands.
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Generate a CA (unless one is given) and server, peer and client
    /// certificates with the given SANs.
    ///
    /// Writes ca.crt/ca.key (when generated), server.crt/.key (serverAuth),
    /// peer.crt/.key (serverAuth + clientAuth) and client.crt/.key
    /// (clientAuth) into --out. Keys get mode 0600. Existing files are never
    /// replaced without --force.
    #[command(after_help = super::examples(super::examples::TLS_GEN))]
    Gen(GenArgs),
    /// Show the certificates of a live endpoint or of a PEM/DER file, and
    /// check a name against them.
    ///
    /// TARGET is HOST:PORT, an https:// URL, or a file. For an endpoint the
    /// chain is captured without trusting it, then checked: is the name
    /// (--name, else the host) covered, is the certificate valid, and, with
    /// --ca, is it trusted. Exit 0 when all checks pass, 1 when one fails,
    /// 2 for usage, file and network errors.
    #[command(after_help = super::examples(super::examples::TLS_INSPECT))]
    Inspect(InspectArgs),
    /// Check a kubeconfig's server exactly as kubectl would connect to it.
    ///
    /// Uses the context's server, certificate-authority(-data),
    /// tls-server-name, insecure-skip-tls-verify and client certificate.
    /// When the host is not covered, lists the SANs present and the fixes.
    /// Exit 0 when kubectl would connect, 1 when it would not, 2 for usage,
    /// file and network errors.
    #[command(after_help = super::examples(super::examples::TLS_CHECK_KUBECONFIG))]
    CheckKubeconfig(CheckKubeconfigArgs),
}

/// Arguments of `topgun tls gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// The directory to write to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Names the server and peer certificates cover: DNS names or IP
    /// addresses, comma-separated or repeated.
    #[arg(
        long = "san",
        visible_alias = "tls-san",
        value_name = "SAN[,SAN...]",
        required = true
    )]
    pub sans: Vec<String>,
    /// Sign with this CA certificate (PEM) instead of generating a CA.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM); goes with --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Common name of the server and peer certificates [default: the first
    /// DNS SAN, else "topgun"].
    #[arg(long, value_name = "NAME")]
    pub cn: Option<String>,
    /// Validity of the leaf certificates, in days.
    #[arg(long, value_name = "DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun tls inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// HOST:PORT, https://URL, or a PEM/DER certificate file or bundle.
    #[arg(value_name = "HOST:PORT|URL|FILE")]
    pub target: String,
    /// The name to check, as a client would dial it; also the SNI
    /// [default: the target's host].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Dial this address (IP[:PORT]) instead of the target's host, e.g. to
    /// check 192.168.1.28 while reaching the server at 127.0.0.1:6443.
    #[arg(long, value_name = "ADDR")]
    pub connect_to: Option<String>,
    /// Verify the chain against this CA file (PEM or DER).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Deadline of each network step, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub timeout: f64,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `topgun tls check-kubeconfig`.
#[derive(Debug, Args)]
pub struct CheckKubeconfigArgs {
    /// The kubeconfig [default: the first path of $KUBECONFIG, else
    /// ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The context to check [default: current-context].
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Dial this address (IP[:PORT]) instead of the server URL's host.
    #[arg(long, value_name = "ADDR")]
    pub connect_to: Option<String>,
    /// Deadline of each network step, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub timeout: f64,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}
