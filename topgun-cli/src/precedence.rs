//! Where each setting of `topgun create` comes from, in one place.
//!
//! A flag beats the environment, which beats the config file, which beats
//! the default: the order cargo and the docker CLI use, so that
//! `TOPGUN_K3S_IMAGE=… topgun create --config team.yaml` runs the image the
//! person at the terminal asked for, and a flag still beats both. List
//! settings (`--tls-san`, `--k3s-arg`, `--env`, `--volume`, `--port`) add
//! to the file's lists. Only this module reads `TOPGUN_*` for create; clap
//! does not fill flags from the environment, so the source of every value
//! is known and `--dry-run` shows it.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Serialize;
use topgun_core::{
    ApiEndpoint, ClusterName, ClusterSpec, Datastore, EtcdDatastore, ExternalDatastore, Filtered,
    ImageSet, RegistriesConfig, RegistryRef, RegistrySpec, SanList, Timeouts, Token,
};

use crate::cli::cluster::{CreateArgs, DatastoreKind};

/// The environment variables `topgun create` reads.
pub const ENV_K3S_IMAGE: &str = "TOPGUN_K3S_IMAGE";
/// The etcd image's variable.
pub const ENV_ETCD_IMAGE: &str = "TOPGUN_ETCD_IMAGE";
/// The load balancer image's variable.
pub const ENV_LB_IMAGE: &str = "TOPGUN_LB_IMAGE";
/// The join token's variable (a flag would show it to every user).
pub const ENV_TOKEN: &str = "TOPGUN_TOKEN";

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A command-line flag (or the NAME argument).
    Flag,
    /// An environment variable.
    Env,
    /// The `--config` file.
    File,
    /// topgun's default.
    Default,
}

/// One setting as resolved: its value (secrets redacted) and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// The value as shown.
    pub value: String,
    /// Where it came from.
    pub source: Source,
    /// The variable, when the source is the environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<&'static str>,
}

/// The spec `topgun create` builds, with the source of each setting.
#[derive(Debug)]
pub struct Resolved {
    /// The validated spec.
    pub spec: ClusterSpec,
    /// Setting name (as in the config file) to value and source.
    pub settings: BTreeMap<&'static str, Setting>,
}

/// The first of the layers that has a value: flag, environment, file,
/// default.
fn pick<T>(
    flag: Option<T>,
    env: Option<(T, &'static str)>,
    file: Option<T>,
    default: T,
) -> (T, Source, Option<&'static str>) {
    match (flag, env, file) {
        (Some(v), _, _) => (v, Source::Flag, None),
        (None, Some((v, var)), _) => (v, Source::Env, Some(var)),
        (None, None, Some(v)) => (v, Source::File, None),
        (None, None, None) => (default, Source::Default, None),
    }
}

/// Builds the spec of `topgun create` from its flags, the environment
/// (through `env`) and the config file, and validates it.
pub fn resolve(
    args: &CreateArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Resolved> {
    let env_value = |var: &'static str| {
        env(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(|v| (v, var))
    };
    let file = match &args.config {
        Some(path) => Some(ClusterSpec::from_yaml_file(path)?),
        None => None,
    };
    let mut settings = BTreeMap::new();
    let mut record = |name: &'static str, value: String, source: Source, variable| {
        settings.insert(
            name,
            Setting {
                value,
                source,
                variable,
            },
        );
    };

    let name = match (&args.name, &file) {
        (Some(name), _) => {
            record("name", name.clone(), Source::Flag, None);
            ClusterName::new(name)?
        }
        (None, Some(f)) => {
            record("name", f.name.to_string(), Source::File, None);
            f.name.clone()
        }
        (None, None) => bail!("give the cluster a NAME (or a --config file that names it)"),
    };
    let mut spec = file
        .clone()
        .unwrap_or_else(|| ClusterSpec::new(name.clone()));
    spec.name = name;
    let defaults = ClusterSpec::new(spec.name.clone());

    // Counts: flag, file, default (a file value equal to the default counts
    // as the default).
    let (servers, source, _) = pick(
        args.servers,
        None,
        file.as_ref()
            .map(|f| f.servers)
            .filter(|n| *n != defaults.servers),
        defaults.servers,
    );
    spec.servers = servers;
    record("servers", servers.to_string(), source, None);
    let (agents, source, _) = pick(
        args.agents,
        None,
        file.as_ref()
            .map(|f| f.agents)
            .filter(|n| *n != defaults.agents),
        defaults.agents,
    );
    spec.agents = agents;
    record("agents", agents.to_string(), source, None);

    // Images: flag, environment, file, default.
    let default_images = ImageSet::resolve(&defaults, |_| None);
    let (image, source, var) = pick(
        args.image.clone(),
        env_value(ENV_K3S_IMAGE),
        file.as_ref().and_then(|f| f.image.clone()),
        default_images.k3s.clone(),
    );
    spec.image = (source != Source::Default).then(|| image.clone());
    record("image", image, source, var);
    let (lb_image, source, var) = pick(
        args.lb_image.clone(),
        env_value(ENV_LB_IMAGE),
        file.as_ref().and_then(|f| f.loadbalancer.image.clone()),
        default_images.loadbalancer.clone(),
    );
    spec.loadbalancer.image = (source != Source::Default).then(|| lb_image.clone());
    record("loadbalancer.image", lb_image, source, var);

    // The join token: flag, environment, file, a random one per cluster.
    let (token, source, var) = pick(
        args.token.clone(),
        env_value(ENV_TOKEN),
        file.as_ref()
            .and_then(|f| f.token.as_ref())
            .map(|t| t.expose().to_owned()),
        String::new(),
    );
    spec.token = match source {
        Source::Default => None,
        _ => Some(Token::new(&token)?),
    };
    let shown = match source {
        Source::Default => "(256 random bits, made at create)",
        _ => "(redacted)",
    };
    record("token", shown.to_owned(), source, var);

    // The API endpoint: flag, file, default.
    let file_api = file
        .as_ref()
        .map(|f| f.api)
        .filter(|api| *api != defaults.api);
    let (api, source, _) = pick(
        args.api_port
            .as_deref()
            .map(ApiEndpoint::parse)
            .transpose()?,
        None,
        file_api,
        defaults.api,
    );
    spec.api = api;
    let shown = match api.port {
        Some(_) => api.to_string(),
        None => format!("{api}(a free port, picked at create)"),
    };
    record("api-port", shown, source, None);

    // The datastore: flags, file, default.
    let flag_datastore = datastore_flags(args, &spec.datastore)?;
    let file_datastore = file
        .as_ref()
        .map(|f| f.datastore.clone())
        .filter(|d| *d != defaults.datastore);
    let (datastore, source, _) = pick(
        flag_datastore,
        None,
        file_datastore,
        defaults.datastore.clone(),
    );
    spec.datastore = datastore;
    // The etcd image: flag, environment, file, default (with an etcd
    // datastore only).
    if let Datastore::Etcd(etcd) = &mut spec.datastore {
        let file_image = file.as_ref().and_then(|f| match &f.datastore {
            Datastore::Etcd(e) => e.image.clone(),
            _ => None,
        });
        let (image, image_source, var) = pick(
            args.etcd_image.clone(),
            env_value(ENV_ETCD_IMAGE),
            file_image,
            default_images.etcd.clone(),
        );
        etcd.image = (image_source != Source::Default).then(|| image.clone());
        record("datastore.etcd.image", image, image_source, var);
    } else if args.etcd_image.is_some() {
        bail!("--etcd-image goes with --datastore etcd");
    }
    record(
        "datastore",
        describe_datastore(&spec.datastore),
        source,
        None,
    );

    // Lists: the file's, then the flags'.
    for sans in &args.tls_san {
        spec.tls_san.0.extend(SanList::parse(sans)?);
    }
    for arg in &args.k3s_arg {
        spec.k3s_args.push(Filtered::parse(arg)?);
    }
    for var in &args.env {
        spec.env.push(Filtered::parse(var)?);
    }
    for volume in &args.volume {
        spec.volumes.push(Filtered::parse(volume)?);
    }
    for port in &args.port {
        spec.ports.push(Filtered::parse(port)?);
    }
    // Registries: a flag's registry to create or registries.yaml beats the
    // file's; the registries used are the file's and the flags'.
    let (create, source, _) = pick(
        args.registry_create
            .as_deref()
            .map(RegistrySpec::parse)
            .transpose()?
            .map(Some),
        None,
        file.as_ref()
            .and_then(|f| f.registries.create.clone())
            .map(Some),
        None,
    );
    let shown = create.as_ref().map_or_else(
        || "none".to_owned(),
        |c| match c.port {
            Some(port) => format!("{}:{port}", c.name),
            None => format!("{} (a free port)", c.name),
        },
    );
    spec.registries.create = create;
    record("registries.create", shown, source, None);
    for r in &args.registry_use {
        spec.registries.uses.push(RegistryRef::parse(r)?);
    }
    let (config, source, _) = pick(
        args.registry_config
            .as_deref()
            .map(RegistriesConfig::from_file)
            .transpose()?
            .map(Some),
        None,
        file.as_ref()
            .and_then(|f| f.registries.config.clone())
            .map(Some),
        None,
    );
    let shown = match &config {
        Some(_) => "(a registries.yaml: may hold credentials, not shown)",
        None => "none",
    };
    spec.registries.config = config;
    record("registries.config", shown.to_owned(), source, None);
    if args.no_lb {
        spec.loadbalancer.enabled = false;
    }
    if let Some(timeout) = args.timeout {
        spec.timeouts = Timeouts::all(timeout);
    }
    if args.no_rollback {
        spec.no_rollback = true;
    }
    spec.validate()?;
    Ok(Resolved { spec, settings })
}

/// The datastore the flags ask for, if they ask; `current` is the file's
/// (an etcd datastore keeps its other settings when only the member count
/// changes).
fn datastore_flags(args: &CreateArgs, current: &Datastore) -> anyhow::Result<Option<Datastore>> {
    if let Some(endpoint) = &args.datastore_endpoint {
        if args.datastore.is_some() || args.etcd_members.is_some() {
            bail!(
                "--datastore-endpoint is a datastore of its own; leave out --datastore and --etcd-members"
            );
        }
        let Datastore::External(ext) = Datastore::external(endpoint)? else {
            bail!("--datastore-endpoint {endpoint:?} is not an external datastore");
        };
        let ext = ExternalDatastore::with_tls(
            ext,
            args.datastore_cafile.clone(),
            args.datastore_certfile.clone(),
            args.datastore_keyfile.clone(),
        );
        return Ok(Some(Datastore::External(ext)));
    }
    if args.datastore_cafile.is_some()
        || args.datastore_certfile.is_some()
        || args.datastore_keyfile.is_some()
    {
        bail!(
            "--datastore-cafile, --datastore-certfile and --datastore-keyfile go with --datastore-endpoint"
        );
    }
    let kind = args
        .datastore
        .or(args.etcd_members.map(|_| DatastoreKind::Etcd));
    Ok(match kind {
        Some(DatastoreKind::Embedded) => {
            if args.etcd_members.is_some() {
                bail!("--etcd-members goes with --datastore etcd");
            }
            Some(Datastore::Embedded)
        }
        Some(DatastoreKind::Etcd) => {
            let mut etcd = match current {
                Datastore::Etcd(e) => e.clone(),
                _ => EtcdDatastore::default(),
            };
            if let Some(n) = args.etcd_members {
                etcd.members = n;
            }
            Some(Datastore::Etcd(etcd))
        }
        None => None,
    })
}

/// `embedded`, `etcd (3 members)` or the external endpoint (without
/// credentials).
fn describe_datastore(datastore: &Datastore) -> String {
    match datastore {
        Datastore::Embedded => "embedded".to_owned(),
        Datastore::Etcd(e) => format!("etcd ({} members)", e.members),
        Datastore::External(ext) => format!("external ({})", ext.endpoint),
        _ => "another datastore".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(argv: &[&str]) -> CreateArgs {
        let mut full = vec!["topgun", "create"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Create(args) => *args,
            _ => unreachable!("a create"),
        }
    }

    /// The precedence table: for each setting, which layer wins when
    /// several are given.
    #[test]
    fn flag_then_env_then_file_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "name: filed\nimage: file/k3s:1\ntoken: file-token-0123456789\napi-port: 127.0.0.1:7001\n\
             datastore: {etcd: {members: 5}}\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let env_all = |k: &str| match k {
            ENV_K3S_IMAGE => Some("env/k3s:1".to_owned()),
            ENV_TOKEN => Some("env-token-0123456789".to_owned()),
            _ => None,
        };
        let no_env = |_: &str| None;
        #[rustfmt::skip]
        let table: &[(&str, &[&str], bool, &str, Source)] = &[
            // setting, flags, env set, expected value, expected source
            ("image", &["x", "--image", "flag/k3s:1", "--config", file], true, "flag/k3s:1", Source::Flag),
            ("image", &["x", "--config", file], true, "env/k3s:1", Source::Env),
            ("image", &["x", "--config", file], false, "file/k3s:1", Source::File),
            ("image", &["x"], false, "rancher/k3s:", Source::Default),
            ("token", &["x", "--token", "flag-token-0123456789", "--config", file], true, "(redacted)", Source::Flag),
            ("token", &["x", "--config", file], true, "(redacted)", Source::Env),
            ("token", &["x", "--config", file], false, "(redacted)", Source::File),
            ("token", &["x"], false, "(256 random bits", Source::Default),
            ("api-port", &["x", "--api-port", "7002", "--config", file], true, "127.0.0.1:7002", Source::Flag),
            ("api-port", &["x", "--config", file], true, "127.0.0.1:7001", Source::File),
            ("api-port", &["x"], true, "127.0.0.1", Source::Default),
            ("datastore", &["x", "--datastore", "embedded", "--config", file], true, "embedded", Source::Flag),
            ("datastore", &["x", "--etcd-members", "3", "--config", file], true, "etcd (3 members)", Source::Flag),
            ("datastore", &["x", "--config", file], true, "etcd (5 members)", Source::File),
            ("datastore", &["x"], true, "embedded", Source::Default),
            ("name", &["x", "--config", file], true, "x", Source::Flag),
            ("name", &["--config", file], true, "filed", Source::File),
        ];
        for (setting, argv, with_env, value, source) in table {
            let env: &dyn Fn(&str) -> Option<String> = if *with_env { &env_all } else { &no_env };
            let resolved = resolve(&args(argv), env).unwrap();
            let got = &resolved.settings[setting];
            assert_eq!(got.source, *source, "{setting} with {argv:?}: {got:?}");
            assert!(
                got.value.starts_with(value),
                "{setting} with {argv:?}: {got:?}"
            );
        }
        // The winning token is the one the spec carries.
        let tokens: &[(&[&str], bool, &str)] = &[
            (
                &["x", "--token", "flag-token-0123456789", "--config", file],
                true,
                "flag-token-0123456789",
            ),
            (&["x", "--config", file], true, "env-token-0123456789"),
            (&["x", "--config", file], false, "file-token-0123456789"),
        ];
        for (argv, with_env, token) in tokens {
            let env: &dyn Fn(&str) -> Option<String> = if *with_env { &env_all } else { &no_env };
            let spec = resolve(&args(argv), env).unwrap().spec;
            assert_eq!(spec.token.unwrap().expose(), *token);
        }
        // The environment names its variable.
        let resolved = resolve(&args(&["x"]), &env_all).unwrap();
        assert_eq!(resolved.settings["image"].variable, Some(ENV_K3S_IMAGE));
        assert_eq!(resolved.spec.image.as_deref(), Some("env/k3s:1"));
    }
}
