//! Per-tenant settings in `bento.yaml`: the quotas every tenant gets
//! (`quotas:`), and what one tenant gets instead (`tenants: NAME:`). Tenants
//! themselves and their keys live in the data dir (`bento tenants add`,
//! `bento keys create`); see docs/tenants.md.

use serde::{Deserialize, Deserializer};

/// The tenant of the legacy `api_key`, of keyless loopback use, and of
/// everything made before tenants existed.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant's name: 1-32 of `a-z`, `0-9`, `-` and `_`, starting with a
/// letter or digit. It appears in metrics labels and file names, hence the
/// narrow alphabet.
pub fn valid_tenant(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Limits on what one tenant may hold at once. Unset: no limit of that
/// kind (beyond the controller's own, such as `max_sessions`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Sessions whose function runs (or is starting), at once.
    pub sessions: Option<u64>,
    /// Sessions started (runs and forks) in any 60 seconds.
    pub starts_per_minute: Option<u64>,
    /// Memory limits of the running sessions, summed, in bytes (or `8g`).
    #[serde(deserialize_with = "de_opt_size")]
    pub memory: Option<u64>,
    /// CPU limits of the running sessions, summed.
    pub cpus: Option<f64>,
    /// Stored functions.
    pub functions: Option<u64>,
    /// Stored functions' code, summed, in bytes (or `10m`).
    #[serde(deserialize_with = "de_opt_size")]
    pub function_bytes: Option<u64>,
    /// Output held on disk for the tenant's sessions, in bytes (or `1g`):
    /// at the quota no new session starts until clients read it.
    #[serde(deserialize_with = "de_opt_size")]
    pub spool_bytes: Option<u64>,
}

impl Quotas {
    /// `self`, with every quota it leaves unset taken from `base`.
    pub fn over(&self, base: &Quotas) -> Quotas {
        Quotas {
            sessions: self.sessions.or(base.sessions),
            starts_per_minute: self.starts_per_minute.or(base.starts_per_minute),
            memory: self.memory.or(base.memory),
            cpus: self.cpus.or(base.cpus),
            functions: self.functions.or(base.functions),
            function_bytes: self.function_bytes.or(base.function_bytes),
            spool_bytes: self.spool_bytes.or(base.spool_bytes),
        }
    }

    pub(crate) fn check(&self, who: &str) -> Result<(), String> {
        if let Some(c) = self.cpus {
            if !c.is_finite() || c <= 0.0 {
                return Err(format!("{who}: quotas.cpus must be a number above 0"));
            }
        }
        Ok(())
    }
}

/// One tenant's settings (`tenants: NAME:` in bento.yaml).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// Its quotas; those left unset come from the top-level `quotas:`.
    pub quotas: Quotas,
    /// A session token alone lets its holder attach (the capability model,
    /// the default). Set, attaching also takes a key of this tenant with
    /// the user or admin role.
    pub attach_requires_key: bool,
    /// The images its functions may run in; unset: every image. An image
    /// that relaxes the sandbox (network, say) can so be kept to the
    /// tenants meant to have it. The others see no such image.
    pub images: Option<Vec<String>>,
}

impl TenantSettings {
    /// Whether the tenant's functions may run in `image`.
    pub fn may_use(&self, image: &str) -> bool {
        self.images
            .as_ref()
            .is_none_or(|list| list.iter().any(|i| i == image))
    }
}

impl super::Config {
    /// What `tenant` gets: its own settings over the top-level `quotas:`.
    pub fn tenant(&self, tenant: &str) -> TenantSettings {
        match self.tenants.get(tenant) {
            Some(t) => TenantSettings {
                quotas: t.quotas.over(&self.quotas),
                attach_requires_key: t.attach_requires_key,
                images: t.images.clone(),
            },
            None => TenantSettings {
                quotas: self.quotas.clone(),
                ..TenantSettings::default()
            },
        }
    }

    /// Every image a tenant's `images:` names is one of the config's (run
    /// once the images are loaded).
    pub(crate) fn check_tenant_images(&self) -> Result<(), String> {
        for (name, t) in &self.tenants {
            for image in t.images.iter().flatten() {
                if !self.images.contains_key(image) {
                    let known: Vec<&str> = self.images.keys().map(String::as_str).collect();
                    return Err(format!(
                        "tenants.{name}.images: unknown image {image:?}; known images: {}",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn check_tenants(&self) -> Result<(), String> {
        self.quotas.check("quotas")?;
        for (name, t) in &self.tenants {
            if !valid_tenant(name) {
                return Err(format!(
                    "tenants: {name:?} is not a tenant name (1-32 of a-z, 0-9, '-', '_')"
                ));
            }
            t.quotas.check(&format!("tenants.{name}"))?;
        }
        Ok(())
    }
}

/// A size in bytes: a number, or a string like `512m`.
fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(s)) => super::image::size_bytes(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("{s:?} is not a size like 512m or 8g"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_quotas_fall_back_to_the_defaults_one_by_one() {
        let base = Quotas {
            sessions: Some(10),
            memory: Some(1 << 30),
            ..Quotas::default()
        };
        let own: Quotas = serde_yaml::from_str("sessions: 2\nspool_bytes: 1m").expect("yaml");
        let q = own.over(&base);
        assert_eq!(q.sessions, Some(2));
        assert_eq!(q.memory, Some(1 << 30));
        assert_eq!(q.spool_bytes, Some(1 << 20));
        assert_eq!(q.cpus, None);
    }

    #[test]
    fn bad_sizes_names_and_cpus_are_refused() {
        assert!(serde_yaml::from_str::<Quotas>("memory: lots").is_err());
        assert!(serde_yaml::from_str::<Quotas>("sesions: 1").is_err());
        let mut c = crate::config::Config::default();
        c.tenants.insert("Acme".into(), TenantSettings::default());
        assert!(c.check_tenants().is_err());
        let c = crate::config::Config {
            quotas: Quotas {
                cpus: Some(0.0),
                ..Quotas::default()
            },
            ..crate::config::Config::default()
        };
        assert!(c.check_tenants().is_err());
    }

    #[test]
    fn a_tenants_images_are_known_ones_and_unset_means_all() {
        let mut c = crate::config::Config::default();
        let python = crate::config::ImageSpec::builtin_python(std::path::Path::new("."));
        c.images.insert("python".into(), python);
        let kept: TenantSettings = serde_yaml::from_str("images: [python]").expect("yaml");
        c.tenants.insert("kept".into(), kept);
        assert!(c.check_tenant_images().is_ok());
        assert!(c.tenant("kept").may_use("python"));
        assert!(!c.tenant("kept").may_use("net"));
        assert!(c.tenant("anyone").may_use("net"));
        let none: TenantSettings = serde_yaml::from_str("images: []").expect("yaml");
        assert!(!none.may_use("python"));
        let bad: TenantSettings = serde_yaml::from_str("images: [nett]").expect("yaml");
        c.tenants.insert("bad".into(), bad);
        let e = c.check_tenant_images().err().unwrap_or_default();
        assert!(
            e.contains("tenants.bad.images") && e.contains("\"nett\"") && e.contains("python"),
            "{e}"
        );
    }

    #[test]
    fn tenant_names() {
        for ok in ["default", "acme", "team-2", "a_b", "0x"] {
            assert!(valid_tenant(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "Acme", "a b", "a/b", &"a".repeat(33)] {
            assert!(!valid_tenant(bad), "{bad}");
        }
    }
}
