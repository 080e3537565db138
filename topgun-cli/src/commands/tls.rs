//! `topgun tls`: generate certificates, inspect endpoints and files, check
//! kubeconfigs.
//!
//! Exit codes: 0 when every check passes, 1 for a negative diagnosis (not
//! covered, expired, untrusted, refused), 2 for usage, file and network
//! errors (anything that prevented a diagnosis).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use topgun_tls::endpoint::{EndpointOptions, EndpointReport, EndpointTarget, parse_connect_to};
use topgun_tls::inspect::{CertInfo, SanNames, format_time, inspect_file, inspect_pem_or_der};
use topgun_tls::kubeconfig::{Kubeconfig, KubeconfigCheck, KubeconfigCheckOptions};
use topgun_tls::verify::{Assessment, CheckOptions, Roots, assess, list_sans};
use topgun_tls::write::write_certified_key;
use topgun_tls::{
    CaParams, CertUsage, CertificateAuthority, CertifiedKey, LeafParams, San, parse_san_list,
    san_warnings,
};

use crate::cli::tls::{CheckKubeconfigArgs, GenArgs, InspectArgs, TlsArgs, TlsCommand};
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// Runs `topgun tls`.
pub async fn run(args: TlsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TlsCommand::Gen(args) => gen_certs(args, global),
        TlsCommand::Inspect(args) => inspect(args, global).await,
        TlsCommand::CheckKubeconfig(args) => check_kubeconfig(args, global).await,
    }
}

fn verdict(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_FAILURE)
    }
}

fn timeout(seconds: f64) -> anyhow::Result<Duration> {
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        bail!("--timeout must be between 0 and 3600 seconds, got {seconds}");
    }
    Ok(Duration::from_secs_f64(seconds))
}

// ---------------------------------------------------------------- gen

/// `topgun tls gen -o json`.
#[derive(Debug, Serialize)]
struct GenReport {
    out: String,
    ca: GenCa,
    certificates: Vec<GenCert>,
    warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
struct GenCa {
    cert: String,
    key: Option<String>,
    generated: bool,
    subject: String,
    not_after: String,
    sha256_fingerprint: String,
}

#[derive(Debug, Serialize)]
struct GenCert {
    usage: CertUsage,
    cert: String,
    key: String,
    subject: String,
    sans: SanNames,
    extended_key_usage: Vec<String>,
    not_after: String,
    sha256_fingerprint: String,
}

fn gen_certs(args: GenArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // Everything is validated before anything is written.
    let mut sans: Vec<San> = Vec::new();
    for item in &args.sans {
        for san in parse_san_list(item)? {
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
    }
    let warnings = san_warnings(&sans);
    let generated_ca = args.ca_cert.is_none();
    let names = |stem: &str| [format!("{stem}.crt"), format!("{stem}.key")];
    let mut planned: Vec<String> = Vec::new();
    if generated_ca {
        planned.extend(names("ca"));
    }
    for stem in ["server", "peer", "client"] {
        planned.extend(names(stem));
    }
    if !args.force {
        for name in &planned {
            let path = args.out.join(name);
            if path.exists() {
                bail!(
                    "{} already exists; pass --force to overwrite it",
                    path.display()
                );
            }
        }
    }

    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => load_ca(cert, key)?,
        _ => CertificateAuthority::generate(&CaParams::new("topgun-ca"))?,
    };
    let cn = args.cn.clone().unwrap_or_else(|| {
        sans.iter()
            .find_map(|s| match s {
                San::Dns(d) if !d.starts_with("*.") => Some(d.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "topgun".to_owned())
    });
    let validity = Duration::from_secs(u64::from(args.days) * 24 * 3600);
    let leaves: Vec<(CertUsage, &str, CertifiedKey)> = vec![
        (
            CertUsage::Server,
            "server",
            ca.issue(
                &LeafParams::new(cn.clone(), CertUsage::Server)
                    .with_sans(sans.clone())
                    .with_validity(validity),
            )?,
        ),
        (
            CertUsage::Peer,
            "peer",
            ca.issue(
                &LeafParams::new(cn.clone(), CertUsage::Peer)
                    .with_sans(sans.clone())
                    .with_validity(validity),
            )?,
        ),
        (
            CertUsage::Client,
            "client",
            ca.issue(&LeafParams::new("topgun-client", CertUsage::Client).with_validity(validity))?,
        ),
    ];

    let ca_info = first_cert(ca.cert_pem())?;
    let ca_report = if generated_ca {
        let (cert, key) = write_certified_key(&args.out, "ca", ca.certified_key(), args.force)?;
        GenCa {
            cert: cert.display().to_string(),
            key: Some(key.display().to_string()),
            generated: true,
            subject: ca_info.subject.clone(),
            not_after: format_time(ca_info.not_after),
            sha256_fingerprint: ca_info.sha256_fingerprint.clone(),
        }
    } else {
        GenCa {
            cert: args
                .ca_cert
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
                .to_string(),
            key: None,
            generated: false,
            subject: ca_info.subject.clone(),
            not_after: format_time(ca_info.not_after),
            sha256_fingerprint: ca_info.sha256_fingerprint.clone(),
        }
    };
    let mut certificates = Vec::new();
    for (usage, stem, certified) in &leaves {
        let (cert, key) = write_certified_key(&args.out, stem, certified, args.force)?;
        let info = first_cert(&certified.cert_pem)?;
        certificates.push(GenCert {
            usage: *usage,
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            subject: info.subject,
            sans: info.sans,
            extended_key_usage: info.extended_key_usage,
            not_after: format_time(info.not_after),
            sha256_fingerprint: info.sha256_fingerprint,
        });
    }
    let report = GenReport {
        out: args.out.display().to_string(),
        ca: ca_report,
        certificates,
        warnings,
    };
    if !global.quiet {
        for w in &report.warnings {
            output::warn(w);
        }
    }
    match args.output {
        OutputFormat::Json => output::json(&report)?,
        OutputFormat::Text => output::result(&render_gen(&report)),
    }
    if !global.quiet {
        let server = Path::new(&report.certificates[0].cert);
        output::hint(&format!(
            "check them with `topgun tls inspect {} --ca {}`",
            server.display(),
            report.ca.cert
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn load_ca(cert: &Path, key: &Path) -> anyhow::Result<CertificateAuthority> {
    let cert_pem =
        std::fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem =
        std::fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?;
    let info = first_cert(&cert_pem).with_context(|| format!("{}", cert.display()))?;
    if !info.is_ca {
        bail!(
            "{} is not a CA certificate ({}); pass the CA that should sign, or omit --ca-cert to \
             generate one",
            cert.display(),
            info.subject
        );
    }
    Ok(CertificateAuthority::from_pem(&cert_pem, &key_pem)?)
}

fn first_cert(pem: &str) -> anyhow::Result<CertInfo> {
    inspect_pem_or_der(pem.as_bytes())?
        .into_iter()
        .next()
        .context("no certificate")
}

fn render_gen(r: &GenReport) -> String {
    let mut t = String::new();
    let file = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let _ = writeln!(t, "wrote to {}:", r.out);
    let ca_files = match &r.ca.key {
        Some(key) => format!("{}, {}", file(&r.ca.cert), file(key)),
        None => "(given)".to_owned(),
    };
    let _ = writeln!(
        t,
        "  {:<24} {:<7} {} ({}, until {})",
        ca_files,
        "CA",
        r.ca.subject,
        if r.ca.generated { "new" } else { &r.ca.cert },
        r.ca.not_after
    );
    for c in &r.certificates {
        let usage = match c.usage {
            CertUsage::Server => "server",
            CertUsage::Peer => "peer",
            CertUsage::Client => "client",
        };
        let sans = if c.sans.is_empty() {
            String::new()
        } else {
            format!("; SANs {}", list_sans(&c.sans))
        };
        let _ = writeln!(
            t,
            "  {:<24} {:<7} {}; {}{}",
            format!("{}, {}", file(&c.cert), file(&c.key)),
            usage,
            c.subject,
            c.extended_key_usage.join(", "),
            sans
        );
    }
    let _ = write!(
        t,
        "keys have mode 0600; the leaf certificates are valid until {}",
        r.certificates
            .first()
            .map(|c| c.not_after.as_str())
            .unwrap_or("-")
    );
    t
}

// ---------------------------------------------------------------- inspect

/// `topgun tls inspect FILE -o json`.
#[derive(Debug, Serialize)]
struct FileReport<'a> {
    kind: &'static str,
    source: String,
    certificates: &'a [CertInfo],
    check: &'a Assessment,
}

/// `topgun tls inspect HOST:PORT -o json`.
#[derive(Debug, Serialize)]
struct EndpointJson<'a> {
    kind: &'static str,
    #[serde(flatten)]
    report: &'a EndpointReport,
}

async fn inspect(args: InspectArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let timeout = timeout(args.timeout)?;
    let roots = match &args.ca {
        Some(path) => Some(Roots::from_file(path)?),
        None => None,
    };
    let as_file = Path::new(&args.target);
    if as_file.exists() {
        if args.connect_to.is_some() {
            bail!(
                "--connect-to applies to endpoints, and {} is a file",
                args.target
            );
        }
        return inspect_a_file(as_file, args.name, roots, args.output);
    }
    let target = EndpointTarget::parse(&args.target)
        .map_err(|e| anyhow::anyhow!("{} is not a file, and not an endpoint: {e}", args.target))?;
    let mut opts = EndpointOptions::new(target.clone()).with_timeout(timeout);
    if let Some(name) = args.name {
        opts = opts.with_name(name);
    }
    if let Some(addr) = &args.connect_to {
        opts = opts.with_connect_to(parse_connect_to(addr, target.port)?);
    }
    if let Some(roots) = roots {
        opts = opts.with_roots(roots);
    }
    let report = topgun_tls::inspect_endpoint(&opts).await?;
    match args.output {
        OutputFormat::Json => output::json(&EndpointJson {
            kind: "endpoint",
            report: &report,
        })?,
        OutputFormat::Text => {
            let mut t = String::new();
            render_connection(&mut t, &report);
            render_chain(&mut t, &report.certificates);
            render_check(&mut t, &report.check, Hints::Endpoint);
            output::result(t.trim_end());
        }
    }
    Ok(verdict(report.check.ok))
}

fn inspect_a_file(
    path: &Path,
    name: Option<String>,
    roots: Option<Roots>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let certificates = inspect_file(path)?;
    let mut options = CheckOptions::new();
    options.name = name;
    options.roots = roots;
    let check = assess(&certificates, &options)?;
    match format {
        OutputFormat::Json => output::json(&FileReport {
            kind: "file",
            source: path.display().to_string(),
            certificates: &certificates,
            check: &check,
        })?,
        OutputFormat::Text => {
            let mut t = String::new();
            let _ = writeln!(t, "{:<14}{}", "file", path.display());
            let _ = writeln!(t);
            render_chain(&mut t, &certificates);
            render_check(&mut t, &check, Hints::File);
            output::result(t.trim_end());
        }
    }
    Ok(verdict(check.ok))
}

// ---------------------------------------------------------------- check-kubeconfig

async fn check_kubeconfig(
    args: CheckKubeconfigArgs,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    let timeout = timeout(args.timeout)?;
    let path: PathBuf = match &args.kubeconfig {
        Some(p) => p.clone(),
        None => Kubeconfig::default_path()?,
    };
    let kubeconfig = Kubeconfig::from_path(&path)?;
    let resolved_port = {
        // The port --connect-to defaults to is the server URL's.
        let resolved = kubeconfig.resolve(args.context.as_deref())?;
        resolved.target.port
    };
    let mut options = KubeconfigCheckOptions::new().with_timeout(timeout);
    if let Some(context) = &args.context {
        options = options.with_context(context.clone());
    }
    if let Some(addr) = &args.connect_to {
        options = options.with_connect_to(parse_connect_to(addr, resolved_port)?);
    }
    let check = topgun_tls::kubeconfig::check_kubeconfig_with(&kubeconfig, &options).await?;
    if !global.quiet {
        for w in &check.warnings {
            output::warn(w);
        }
    }
    match args.output {
        OutputFormat::Json => output::json(&check)?,
        OutputFormat::Text => output::result(&render_kubeconfig(&check)),
    }
    Ok(verdict(check.ok))
}

fn render_kubeconfig(c: &KubeconfigCheck) -> String {
    let mut t = String::new();
    let row = |t: &mut String, k: &str, v: &str| {
        let _ = writeln!(t, "{k:<14}{v}");
    };
    row(
        &mut t,
        "kubeconfig",
        c.kubeconfig.as_deref().unwrap_or("(inline)"),
    );
    row(
        &mut t,
        "context",
        &format!("{} (cluster {}, user {})", c.context, c.cluster, c.user),
    );
    row(&mut t, "server", &c.server);
    let name_note = if c.tls_server_name.is_some() {
        " (tls-server-name)"
    } else {
        " (the server's host)"
    };
    row(&mut t, "checked name", &format!("{}{name_note}", c.host()));
    let ca = if c.insecure_skip_tls_verify {
        format!(
            "{} (insecure-skip-tls-verify: kubectl verifies nothing)",
            c.certificate_authority
        )
    } else {
        c.certificate_authority.clone()
    };
    row(&mut t, "CA", &ca);
    let client = match &c.client_certificate {
        Some(info) => format!(
            "{} ({})",
            info.subject,
            if c.endpoint.client_certificate_sent {
                "sent"
            } else {
                "not requested by the server"
            }
        ),
        None => "none".to_owned(),
    };
    row(&mut t, "client cert", &client);
    render_connection_rows(&mut t, &c.endpoint);
    let _ = writeln!(t);
    render_chain(&mut t, &c.endpoint.certificates);
    render_check(&mut t, &c.endpoint.check, Hints::Kubeconfig);
    t.trim_end().to_owned()
}

// ---------------------------------------------------------------- shared text

/// Which hints suit the command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hints {
    File,
    Endpoint,
    Kubeconfig,
}

fn render_connection(t: &mut String, r: &EndpointReport) {
    let _ = writeln!(t, "{:<14}{}", "endpoint", r.target);
    render_connection_rows(t, r);
    let _ = writeln!(t);
}

fn render_connection_rows(t: &mut String, r: &EndpointReport) {
    let _ = writeln!(t, "{:<14}{}", "connected to", r.connected_to);
    let sni = match &r.sni {
        Some(sni) => format!("SNI {sni}"),
        None => "no SNI: an IP address".to_owned(),
    };
    let _ = writeln!(t, "{:<14}{} ({sni})", "name", r.name);
    let protocol = match (&r.tls_version, &r.cipher_suite) {
        (Some(v), Some(s)) => format!("{v}, {s}"),
        _ => format!(
            "handshake failed: {}",
            r.handshake_error.as_deref().unwrap_or("unknown")
        ),
    };
    let _ = writeln!(t, "{:<14}{protocol}", "protocol");
    let client_auth = match (r.client_auth_requested, r.client_certificate_sent) {
        (false, _) => "not requested",
        (true, true) => "requested, certificate sent",
        (true, false) => "requested, none sent",
    };
    let _ = writeln!(t, "{:<14}{client_auth}", "client auth");
}

fn render_chain(t: &mut String, certs: &[CertInfo]) {
    let n = certs.len();
    for (i, c) in certs.iter().enumerate() {
        let role = match (i, c.is_ca) {
            (0, false) => " (leaf)",
            (_, true) if c.self_signed => " (root CA)",
            (_, true) => " (CA)",
            _ => "",
        };
        let _ = writeln!(t, "certificate {} of {n}{role}", i + 1);
        let row = |t: &mut String, k: &str, v: &str| {
            let _ = writeln!(t, "  {k:<12}{v}");
        };
        row(t, "subject", &c.subject);
        row(t, "issuer", &c.issuer);
        row(t, "serial", &c.serial);
        row(t, "not before", &format_time(c.not_before));
        let left = if c.expired {
            format!("EXPIRED {} days ago", -c.days_left)
        } else if c.not_yet_valid {
            "NOT YET VALID".to_owned()
        } else {
            format!("{} days left", c.days_left)
        };
        row(
            t,
            "not after",
            &format!("{} ({left})", format_time(c.not_after)),
        );
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        row(t, "DNS SANs", &list(c.sans.dns.clone()));
        row(
            t,
            "IP SANs",
            &list(c.sans.ip.iter().map(ToString::to_string).collect()),
        );
        if !c.sans.other.is_empty() {
            row(t, "other SANs", &c.sans.other.join(", "));
        }
        row(t, "key", &c.key_algorithm);
        row(t, "CA", if c.is_ca { "yes" } else { "no" });
        row(t, "key usage", &list(c.key_usage.clone()));
        row(t, "EKU", &list(c.extended_key_usage.clone()));
        row(t, "SHA-256", &c.sha256_fingerprint);
        let _ = writeln!(t);
    }
}

fn render_check(t: &mut String, check: &Assessment, hints: Hints) {
    let _ = writeln!(
        t,
        "result        {}",
        if check.ok { "OK" } else { "NOT OK" }
    );
    let name = match (&check.name, check.covered) {
        (Some(n), Some(true)) => format!("{n} is covered"),
        (Some(n), _) => format!("{n} is NOT COVERED"),
        (None, _) => "not checked (pass --name NAME)".to_owned(),
    };
    let _ = writeln!(t, "  {:<12}{name}", "name");
    let validity = if check.expired {
        "EXPIRED".to_owned()
    } else if check.not_yet_valid {
        "NOT YET VALID".to_owned()
    } else {
        "valid now".to_owned()
    };
    let _ = writeln!(t, "  {:<12}{validity}", "validity");
    let trust = match &check.trust {
        Some(v) if v.trusted => format!("trusted by {}", v.roots),
        Some(v) => format!(
            "NOT TRUSTED by {}: {}",
            v.roots,
            v.error.as_deref().unwrap_or("unknown reason")
        ),
        None => match hints {
            Hints::Kubeconfig => "not verified".to_owned(),
            Hints::File | Hints::Endpoint => "not checked (pass --ca FILE)".to_owned(),
        },
    };
    let _ = writeln!(t, "  {:<12}{trust}", "trust");
    if !check.problems.is_empty() {
        let _ = writeln!(t, "problems");
        for p in &check.problems {
            let _ = writeln!(t, "  - {}", p.message);
        }
    }
    if let Some(d) = &check.diagnosis {
        let _ = writeln!(t, "why {} is not covered", d.host);
        let _ = writeln!(t, "  {:<12}{}", "checked", d.host);
        let _ = writeln!(t, "  {:<12}{}", "SANs", list_sans(&d.sans));
        for n in &d.notes {
            let _ = writeln!(t, "  - {n}");
        }
        let _ = writeln!(t, "fixes");
        for (i, f) in d.fixes.iter().enumerate() {
            let _ = writeln!(t, "  {}. {}", i + 1, f.text);
        }
    }
    if !check.notes.is_empty() {
        let _ = writeln!(t, "notes");
        for n in &check.notes {
            let _ = writeln!(t, "  - {n}");
        }
    }
}
