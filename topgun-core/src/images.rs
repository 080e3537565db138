//! Which images a cluster uses: resolved in one place, explicitly.
//!
//! Precedence, highest first: the spec (flags or config file), then the
//! environment (`TOPGUN_K3S_IMAGE`, `TOPGUN_ETCD_IMAGE`, `TOPGUN_LB_IMAGE`),
//! then the pinned defaults.

use serde::Serialize;

use crate::spec::{ClusterSpec, Datastore};

/// The default k3s image (a pinned release; `latest` is not maintained).
pub(crate) const DEFAULT_K3S_IMAGE: &str = "rancher/k3s:v1.31.5-k3s1";
/// The default etcd image (topgun-etcd owns it).
pub(crate) const DEFAULT_ETCD_IMAGE: &str = topgun_etcd::DEFAULT_IMAGE;
/// The default load balancer image (the official haproxy image).
pub(crate) const DEFAULT_LB_IMAGE: &str = "haproxy:3.0.7";

/// Environment variable overriding the k3s image.
pub(crate) const ENV_K3S_IMAGE: &str = "TOPGUN_K3S_IMAGE";
/// Environment variable overriding the etcd image.
pub(crate) const ENV_ETCD_IMAGE: &str = "TOPGUN_ETCD_IMAGE";
/// Environment variable overriding the load balancer image.
pub(crate) const ENV_LB_IMAGE: &str = "TOPGUN_LB_IMAGE";

/// Environment variable deciding whether k3s nodes run privileged
/// (`true`/`false`) when the spec does not say.
pub(crate) const ENV_PRIVILEGED: &str = "TOPGUN_PRIVILEGED";
/// Image label by which a k3s image declares it needs no privileges
/// (`false`), as topgun's k3s stand-in does.
pub(crate) const PRIVILEGED_LABEL: &str = "dev.topgun.privileged";

/// Whether k3s nodes run privileged: the spec, else `TOPGUN_PRIVILEGED`,
/// else the k3s image's [`PRIVILEGED_LABEL`], else yes (k3s needs it).
pub(crate) fn resolve_privileged(
    spec: Option<bool>,
    env: impl Fn(&str) -> Option<String>,
    image_label: Option<&str>,
) -> crate::Result<bool> {
    if let Some(p) = spec {
        return Ok(p);
    }
    let parse = |what: String, v: &str| match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(crate::Error::invalid(
            what,
            "is not true or false",
            "set it to true or false",
        )),
    };
    if let Some(v) = env(ENV_PRIVILEGED).filter(|v| !v.trim().is_empty()) {
        return parse(format!("{ENV_PRIVILEGED}={v:?}"), &v);
    }
    match image_label {
        Some(v) => parse(format!("image label {PRIVILEGED_LABEL}={v:?}"), v),
        None => Ok(true),
    }
}

/// The images of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImageSet {
    /// For servers and agents.
    pub k3s: String,
    /// For etcd members.
    pub etcd: String,
    /// For the load balancer.
    pub loadbalancer: String,
}

impl ImageSet {
    /// Resolves the images of `spec`, reading overrides through `env` (pass
    /// `|k| std::env::var(k).ok()` for the process environment).
    pub fn resolve(spec: &ClusterSpec, env: impl Fn(&str) -> Option<String>) -> Self {
        let pick = |explicit: Option<&String>, var: &str, default: &str| {
            explicit
                .cloned()
                .or_else(|| {
                    env(var)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| v.trim().to_owned())
                })
                .unwrap_or_else(|| default.to_owned())
        };
        let etcd_image = match &spec.datastore {
            Datastore::Etcd(e) => e.image.as_ref(),
            _ => None,
        };
        ImageSet {
            k3s: pick(spec.image.as_ref(), ENV_K3S_IMAGE, DEFAULT_K3S_IMAGE),
            etcd: pick(etcd_image, ENV_ETCD_IMAGE, DEFAULT_ETCD_IMAGE),
            loadbalancer: pick(
                spec.loadbalancer.image.as_ref(),
                ENV_LB_IMAGE,
                DEFAULT_LB_IMAGE,
            ),
        }
    }

    /// Resolves with the process environment.
    pub fn from_env(spec: &ClusterSpec) -> Self {
        ImageSet::resolve(spec, |k| std::env::var(k).ok())
    }

    /// The images `spec` actually runs, without duplicates.
    pub fn needed(&self, spec: &ClusterSpec) -> Vec<&str> {
        let mut out = vec![self.k3s.as_str()];
        if matches!(spec.datastore, Datastore::Etcd(_)) {
            out.push(&self.etcd);
        }
        if spec.loadbalancer.enabled {
            out.push(&self.loadbalancer);
        }
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileged_spec_beats_env_beats_label() {
        let none = |_: &str| None;
        let env_false = |k: &str| (k == ENV_PRIVILEGED).then(|| "false".to_owned());
        assert!(resolve_privileged(None, none, None).unwrap());
        assert!(!resolve_privileged(None, none, Some("false")).unwrap());
        assert!(!resolve_privileged(None, env_false, Some("true")).unwrap());
        assert!(resolve_privileged(Some(true), env_false, Some("false")).unwrap());
        let bad = |_: &str| Some("maybe".to_owned());
        assert!(
            resolve_privileged(None, bad, None)
                .unwrap_err()
                .to_string()
                .contains("TOPGUN_PRIVILEGED")
        );
    }

    #[test]
    fn spec_beats_env_beats_default() {
        let env = |k: &str| match k {
            ENV_K3S_IMAGE => Some("local/k3s:env".to_owned()),
            ENV_ETCD_IMAGE => Some("  ".to_owned()),
            _ => None,
        };
        let spec = ClusterSpec::builder("a").build().unwrap();
        let images = ImageSet::resolve(&spec, env);
        assert_eq!(images.k3s, "local/k3s:env");
        assert_eq!(images.etcd, DEFAULT_ETCD_IMAGE, "blank env is ignored");
        assert_eq!(images.loadbalancer, DEFAULT_LB_IMAGE);

        let spec = ClusterSpec::builder("a")
            .image("mine/k3s:1")
            .datastore(Datastore::Etcd(crate::spec::EtcdDatastore {
                members: 1,
                image: Some("mine/etcd:1".to_owned()),
            }))
            .loadbalancer_image("mine/lb:1")
            .build()
            .unwrap();
        let images = ImageSet::resolve(&spec, env);
        assert_eq!(
            (
                images.k3s.as_str(),
                images.etcd.as_str(),
                images.loadbalancer.as_str()
            ),
            ("mine/k3s:1", "mine/etcd:1", "mine/lb:1")
        );
        assert_eq!(
            images.needed(&spec),
            ["mine/k3s:1", "mine/etcd:1", "mine/lb:1"]
        );
    }
}
