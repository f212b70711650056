//! The engine choice (`engine: docker | swarm`) and the Swarm engine's
//! settings (`swarm:` in `bento.yaml`).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wire::duration::de_duration;

/// Docker's variable for the directory of TLS client files.
pub const DOCKER_CERT_PATH_ENV: &str = "DOCKER_CERT_PATH";

/// Which container engine runs the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// One Docker engine (`docker_host`): today's behaviour.
    #[default]
    Docker,
    /// A Docker Swarm: each session is a one-task service, attached
    /// through the engine API of the node that runs it (`swarm:`).
    Swarm,
}

/// How the controller reaches a Swarm: its manager, and each node's engine.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmConfig {
    /// The manager's engine API, `tcp://HOST:PORT`.
    pub manager: String,
    /// The port of every node's engine API; a node's address is the one the
    /// manager reports for it (`docker node inspect`, `Status.Addr`).
    pub node_port: u16,
    /// Directory of TLS client files in Docker's `DOCKER_CERT_PATH` layout
    /// (`ca.pem`, `cert.pem`, `key.pem`), for the manager and every node.
    /// Unset: `DOCKER_CERT_PATH`.
    pub cert_path: Option<PathBuf>,
    /// Speak plain TCP (no TLS) to the manager and the nodes. Anyone who can
    /// reach an engine's port then owns that machine: only for a private
    /// test network.
    pub allow_plain_tcp: bool,
    /// Deadline of every call to the manager or a node.
    #[serde(deserialize_with = "de_duration")]
    pub call_timeout: Duration,
    /// How long a new session's task may take to be placed and to get its
    /// container (a task no node fits stays pending forever otherwise).
    #[serde(deserialize_with = "de_duration")]
    pub start_timeout: Duration,
    /// How often the manager is asked for the nodes' states.
    #[serde(deserialize_with = "de_duration")]
    pub node_poll: Duration,
    /// A registry the nodes pull function images from, `HOST[:PORT][/PATH]`
    /// (`registry.example.com:5000/team`). Images are then
    /// `REGISTRY/bento/NAME:latest`; `bento images build` builds once and
    /// pushes, and a node pulls an image when it first runs it. Unset:
    /// `bento images build` loads the image on every node itself.
    pub registry: Option<String>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            manager: String::new(),
            node_port: 2376,
            cert_path: None,
            allow_plain_tcp: false,
            call_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(60),
            node_poll: Duration::from_secs(1),
            registry: None,
        }
    }
}

/// The TLS client files of [`SwarmConfig::cert_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Docker's layout in `dir`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// A registry reference images can be named under: `HOST[:PORT][/PATH]`.
fn registry_ok(r: &str) -> bool {
    let host = r.split('/').next().unwrap_or_default();
    !r.is_empty()
        && r.len() <= 200
        && !host.is_empty()
        && !r.ends_with('/')
        && !r.contains("//")
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '-' | '_'))
        && r.split('/').skip(1).all(|p| !p.contains(':'))
}

impl SwarmConfig {
    /// Values that parse but cannot work; also settles `cert_path` from
    /// `DOCKER_CERT_PATH` when unset.
    pub(super) fn check(&mut self) -> Result<(), String> {
        let host = self
            .manager
            .strip_prefix("tcp://")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                format!(
                    "swarm.manager {:?} must be tcp://HOST:PORT (the manager's engine API)",
                    self.manager
                )
            })?;
        if !host.contains(':') {
            return Err(format!("swarm.manager {:?} needs a port", self.manager));
        }
        if self.node_port == 0 {
            return Err("swarm.node_port must be a port (1-65535)".into());
        }
        for (name, d) in [
            ("call_timeout", self.call_timeout),
            ("start_timeout", self.start_timeout),
            ("node_poll", self.node_poll),
        ] {
            if d.is_zero() {
                return Err(format!("swarm.{name} must be more than 0"));
            }
        }
        if let Some(r) = &self.registry {
            if !registry_ok(r) {
                return Err(format!(
                    "swarm.registry {r:?} must be HOST[:PORT][/PATH] (no scheme, no tag), \
                     e.g. registry.example.com:5000/team"
                ));
            }
        }
        if self.cert_path.is_none() {
            self.cert_path = std::env::var_os(DOCKER_CERT_PATH_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
        }
        match (&self.cert_path, self.allow_plain_tcp) {
            (Some(dir), _) => {
                let files = TlsFiles::in_dir(dir);
                for f in [&files.ca, &files.cert, &files.key] {
                    if !f.is_file() {
                        return Err(format!(
                            "swarm.cert_path: {} is missing (Docker's layout: ca.pem, cert.pem, key.pem)",
                            f.display()
                        ));
                    }
                }
                Ok(())
            }
            (None, true) => Ok(()),
            (None, false) => Err(
                "engine: swarm needs TLS client certificates for the engines it calls \
                 (swarm.cert_path or DOCKER_CERT_PATH, holding ca.pem, cert.pem, key.pem); \
                 plain TCP only with swarm.allow_plain_tcp: true, on a private network"
                    .into(),
            ),
        }
    }

    /// The TLS files, or `None` for plain TCP.
    pub fn tls(&self) -> Option<TlsFiles> {
        self.cert_path.as_deref().map(TlsFiles::in_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(yaml: &str) -> Result<SwarmConfig, String> {
        let mut c: SwarmConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    #[test]
    fn plain_tcp_only_when_allowed() {
        let ok = parsed("manager: tcp://10.0.0.1:2375\nallow_plain_tcp: true\n");
        assert!(matches!(&ok, Ok(c) if c.tls().is_none()), "{ok:?}");
        if std::env::var_os(DOCKER_CERT_PATH_ENV).is_none() {
            let refused = parsed("manager: tcp://10.0.0.1:2375\n").err();
            assert!(refused.is_some_and(|e| e.contains("allow_plain_tcp")));
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for yaml in [
            "manager: 10.0.0.1:2375\nallow_plain_tcp: true\n",
            "manager: tcp://10.0.0.1\nallow_plain_tcp: true\n",
            "manager: tcp://a:1\nallow_plain_tcp: true\nnode_port: 0\n",
            "manager: tcp://a:1\nallow_plain_tcp: true\ncall_timeout: 0s\n",
            "manager: tcp://a:1\ncert_path: /nonexistent/certs\n",
        ] {
            assert!(parsed(yaml).is_err(), "{yaml}");
        }
        assert!(parsed("manager: tcp://a:1\nallow_plain_tcp: true\nnope: 1\n").is_err());
    }

    #[test]
    fn certs_in_dockers_layout() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for f in ["ca.pem", "cert.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap_or_else(|e| panic!("{e}"));
        }
        let yaml = format!(
            "manager: tcp://a:2376\ncert_path: {}\n",
            dir.path().display()
        );
        assert!(parsed(&yaml).is_err_and(|e| e.contains("key.pem")));
        std::fs::write(dir.path().join("key.pem"), "x").unwrap_or_else(|e| panic!("{e}"));
        let c = parsed(&yaml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tls(), Some(TlsFiles::in_dir(dir.path())));
    }

    #[test]
    fn a_registry_is_a_host_and_a_path_without_scheme_or_tag() {
        let base = "manager: tcp://10.0.0.1:2375\nallow_plain_tcp: true\nregistry: ";
        for good in [
            "10.0.0.1:5000",
            "registry.example.com",
            "r.example.com:443/team/x",
        ] {
            let c = parsed(&format!("{base}{good}\n")).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(c.registry.as_deref(), Some(good));
        }
        for bad in ["http://r:5000", "r:5000/", "r/team:v1", "r //x", "''", "/x"] {
            let refused = parsed(&format!("{base}{bad}\n")).err();
            assert!(
                refused
                    .as_deref()
                    .is_some_and(|e| e.contains("swarm.registry")),
                "{bad}: {refused:?}"
            );
        }
    }
}
