//! Server settings (`config/bento.yaml`) and function image descriptions
//! (`config/images/*.yaml`).
//!
//! Every setting has a built-in default, so `bento serve` starts with no file
//! at all. Relative paths in a file are taken relative to the directory the
//! *repository root* is assumed to be: the parent of the directory holding
//! `bento.yaml` (so `config/bento.yaml` says `images/python`, not
//! `../images/python`). Without a file they are relative to the working
//! directory.

mod engine;
pub mod env;
mod image;
mod packages;
mod tenants;

use crate::wire::duration::de_duration;
pub use crate::wire::duration::parse_duration;
pub use engine::{Engine, SwarmConfig, TlsFiles, DOCKER_CERT_PATH_ENV};
pub(crate) use image::size_bytes;
pub use image::{
    size as format_size, ImageSpec, Sandbox, DEFAULT_STOP_GRACE, MAX_STOP_GRACE, MIN_CPUS,
};
pub use packages::{pip_name, BuildSettings, Packages};
pub use tenants::{valid_tenant, Quotas, TenantSettings, DEFAULT_TENANT};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default address the controller listens on and the CLI talks to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7470";
/// Base image of function images unless overridden.
pub const DEFAULT_BASE_IMAGE: &str = "python:3.12-slim";
/// Environment variable that overrides the base image of every build.
pub const BASE_IMAGE_ENV: &str = "BENTO_BASE_IMAGE";
/// Environment variable holding the server's API key.
pub const API_KEY_ENV: &str = "BENTO_API_KEY";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What a session does when its unread output reaches `output_cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputPolicy {
    /// Stop reading the container; the function blocks until a client reads.
    Backpressure,
    /// Kill the function; its exit reason says why.
    Kill,
}

/// Server settings. See `config/bento.yaml` for what each one means.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The container engine: `docker` (one engine, `docker_host`) or
    /// `swarm` (a Docker Swarm, `swarm`).
    pub engine: Engine,
    /// Docker endpoint; `None` uses `DOCKER_HOST` or the local socket.
    pub docker_host: Option<String>,
    /// How to reach the Swarm, for `engine: swarm`.
    pub swarm: SwarmConfig,
    /// Base image for every function image build; `BENTO_BASE_IMAGE` wins over it.
    pub base_image: Option<String>,
    /// Directory of image descriptions (`*.yaml`).
    pub images_dir: PathBuf,
    /// The CA bundle and pip index of every declared image's build, unless
    /// the image's own `build:` says otherwise.
    pub build: BuildSettings,
    /// The driver sources copied into every function image.
    pub driver_dir: PathBuf,
    /// Image used when a function names none.
    pub default_image: String,
    /// How long an ended session with unread output is kept when no client comes for it.
    #[serde(deserialize_with = "de_duration")]
    pub session_ttl: Duration,
    /// How long the record of a reaped session is kept (`bento ls -a`).
    #[serde(deserialize_with = "de_duration")]
    pub history_ttl: Duration,
    /// The most records of reaped sessions kept; the oldest go first.
    pub history_max: u64,
    /// Output kept in memory per session; the rest is spooled to disk.
    pub output_memory_window: u64,
    /// Messages queued per attached client before it counts as too slow.
    pub client_queue: usize,
    /// Unacknowledged output a session may hold (memory plus spool), in
    /// bytes. At the cap the controller stops reading the container, so the
    /// function blocks until a client catches up: nothing is dropped.
    pub output_cap: u64,
    /// The input history a session keeps so that it can be forked, in
    /// bytes (each input costs its payload plus 29 bytes: a length and
    /// its replay point). Past it the history stops, and forks after that
    /// point are refused; 0 keeps none (no session can be forked).
    pub fork_history_max: u64,
    /// Unacknowledged messages a session may hold. Each costs memory and
    /// disk beyond its payload (an index entry, a spool record), so
    /// millions of tiny ones are bounded here as the bytes are by
    /// `output_cap`; at the cap `output_policy` applies as well.
    pub output_max_messages: u64,
    /// What happens at `output_cap` (or `output_max_messages`): `backpressure` (the default: stop
    /// reading, the function blocks) or `kill` (the function is killed with
    /// the reason "output cap reached").
    pub output_policy: OutputPolicy,
    /// Docker labels prefix; containers are found by `{prefix}.session`.
    pub label_prefix: String,
    /// API key clients must send as `Authorization: Bearer KEY`. Required
    /// when listening on anything but loopback. `BENTO_API_KEY` wins over it.
    pub api_key: Option<String>,
    /// File holding the API key (first line), as an alternative to `api_key`.
    pub api_key_file: Option<PathBuf>,
    /// Serve without an API key on a non-loopback address. Only for a
    /// controller inside a container whose port is published on the host's
    /// loopback alone (the compose stack): anyone who can reach the port
    /// can run code. Off by default; a warning is logged when on.
    pub allow_unauthenticated: bool,
    /// Build function images that are missing when the controller starts.
    pub build_images_on_start: bool,
    /// Running sessions at most (those being created count too); past it
    /// creating one gets 429.
    pub max_sessions: usize,
    /// Ended sessions whose output nobody has read yet, at most; while
    /// there are this many, creating a session gets 429 (nothing held is
    /// discarded to make room).
    pub max_ended_sessions: usize,
    /// Client connections open at once (attached WebSockets included);
    /// past it a connection is answered 503 and closed. Unset: derived from
    /// the open-file limit and `max_sessions`.
    pub max_connections: Option<usize>,
    /// How long a connection may take to send a request's head, counted
    /// from when it is accepted or its last response was sent: an idle
    /// connection is closed after it.
    #[serde(deserialize_with = "de_duration")]
    pub header_timeout: Duration,
    /// Heartbeat interval of the attach protocol; a peer silent for two
    /// intervals is treated as gone.
    #[serde(deserialize_with = "de_duration")]
    pub heartbeat_interval: Duration,
    /// How long a transient session's function survives without a client.
    #[serde(deserialize_with = "de_duration")]
    pub transient_grace: Duration,
    /// How long before a session's timeout an attached client is sent a
    /// `deadline` message (docs/leases.md); 0 sends none.
    #[serde(deserialize_with = "de_duration")]
    pub deadline_warning: Duration,
    /// How long an attached client's queue may stay full before the client
    /// is detached as too slow (its session keeps running and spooling).
    #[serde(deserialize_with = "de_duration")]
    pub slow_client_timeout: Duration,
    /// How long a running session's driver has to answer RESUME after a
    /// controller restart; past it the session is killed and ends as lost.
    #[serde(deserialize_with = "de_duration")]
    pub resume_timeout: Duration,
    /// The quotas every tenant gets (docs/tenants.md); unset: none.
    pub quotas: Quotas,
    /// What one tenant gets instead: its own quotas, and whether attaching
    /// takes its key as well as a session token.
    pub tenants: BTreeMap<String, TenantSettings>,
    /// The audit log's size before it is rotated (`audit.log` →
    /// `audit.log.1`; three old files are kept).
    pub audit_max_bytes: u64,
    /// This controller's persistent identity, from its data dir (not a YAML
    /// key; set when it starts, see `controller::identity`).
    #[serde(skip)]
    pub controller_id: String,
    /// Image descriptions loaded from `images_dir` (not a YAML key).
    #[serde(skip)]
    pub images: BTreeMap<String, ImageSpec>,
    /// Directory relative paths are resolved against (not a YAML key).
    #[serde(skip)]
    pub root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| unreachable_listen()),
            data_dir: PathBuf::from("bento-data"),
            engine: Engine::Docker,
            docker_host: None,
            swarm: SwarmConfig::default(),
            base_image: None,
            images_dir: PathBuf::from("config/images"),
            build: BuildSettings::default(),
            driver_dir: PathBuf::from("driver"),
            default_image: "python".into(),
            session_ttl: Duration::from_secs(24 * 3600),
            history_ttl: Duration::from_secs(7 * 24 * 3600),
            history_max: 10_000,
            output_memory_window: 4 << 20,
            client_queue: 256,
            output_cap: 1 << 30,
            fork_history_max: 16 << 20,
            output_max_messages: 100_000,
            output_policy: OutputPolicy::Backpressure,
            label_prefix: "dev.bento".into(),
            api_key: None,
            api_key_file: None,
            allow_unauthenticated: false,
            build_images_on_start: false,
            max_sessions: 256,
            max_ended_sessions: 1024,
            max_connections: None,
            header_timeout: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(5),
            transient_grace: Duration::from_secs(30),
            deadline_warning: Duration::from_secs(30),
            slow_client_timeout: Duration::from_secs(10),
            resume_timeout: Duration::from_secs(10),
            quotas: Quotas::default(),
            tenants: BTreeMap::new(),
            audit_max_bytes: 10 << 20,
            controller_id: String::new(),
            images: BTreeMap::new(),
            root: PathBuf::from("."),
        }
    }
}

fn unreachable_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7470))
}

impl Config {
    /// Loads `path` if given, else `config/bento.yaml` if it exists, else the
    /// defaults; then loads the image descriptions.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let default_path = Path::new("config/bento.yaml");
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None if default_path.exists() => Some(default_path.to_path_buf()),
            None => None,
        };
        let mut config = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                let mut c = Config::parse(&text, p)?;
                c.root = config_root(p);
                if let Some(dir) = c.swarm.cert_path.take() {
                    c.swarm.cert_path = Some(c.resolve(&dir));
                }
                c.check().map_err(|message| ConfigError::Invalid {
                    path: p.clone(),
                    message,
                })?;
                c
            }
            None => Config::default(),
        };
        config.data_dir = config.resolve(&config.data_dir);
        config.images_dir = config.resolve(&config.images_dir);
        config.driver_dir = config.resolve(&config.driver_dir);
        let root = config.root.clone();
        config
            .build
            .check(&root)
            .map_err(|message| ConfigError::Invalid {
                path: path.clone().unwrap_or_default(),
                message,
            })?;
        config.images = image::load_images(&config.images_dir, &config.root)?;
        config.load_api_key(path.as_deref())?;
        if let Ok(prefix) = std::env::var(LABEL_PREFIX_ENV) {
            config.label_prefix = prefix;
        }
        if !valid_label_prefix(&config.label_prefix) {
            return Err(ConfigError::Invalid {
                path: path.clone().unwrap_or_default(),
                message: format!(
                    "label_prefix {:?} (or {LABEL_PREFIX_ENV}) must be 1-64 characters of \
                     a-z, 0-9, '.', '-' and '_', starting and ending with a letter or digit",
                    config.label_prefix
                ),
            });
        }
        if config.images.is_empty() {
            // No descriptions at all: the built-in python image still works.
            let spec = ImageSpec::builtin_python(&config.root);
            config.images.insert(spec.name.clone(), spec);
        }
        if config.engine == Engine::Swarm {
            for spec in config.images.values_mut() {
                spec.registry = config.swarm.registry.clone();
            }
        }
        config
            .check_tenant_images()
            .map_err(|message| ConfigError::Invalid {
                path: path.clone().unwrap_or_default(),
                message,
            })?;
        Ok(config)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // An empty file is a valid, all-defaults configuration.
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Values that parse but would leave the server unusable.
    fn check(&mut self) -> Result<(), String> {
        if self.engine == Engine::Swarm {
            self.swarm.check()?;
        }
        if self.header_timeout.is_zero() {
            return Err("header_timeout must be more than 0".into());
        }
        if self.max_connections == Some(0) {
            return Err("max_connections must be at least 1 (or unset)".into());
        }
        if self.max_sessions == 0 || self.max_ended_sessions == 0 {
            return Err("max_sessions and max_ended_sessions must be at least 1".into());
        }
        if self.audit_max_bytes < 4096 {
            return Err("audit_max_bytes must be at least 4096".into());
        }
        self.check_tenants()?;
        Ok(())
    }

    /// `BENTO_API_KEY`, else `api_key`, else the first line of `api_key_file`.
    fn load_api_key(&mut self, config_path: Option<&Path>) -> Result<(), ConfigError> {
        if let Ok(k) = std::env::var(API_KEY_ENV) {
            self.api_key = Some(k);
        } else if self.api_key.is_none() {
            if let Some(file) = self.api_key_file.clone() {
                let file = self.resolve(&file);
                let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                    path: file.clone(),
                    source,
                })?;
                self.api_key = text.lines().next().map(|l| l.trim().to_string());
            }
        }
        if let Some(k) = &self.api_key {
            if k.trim().len() < 16 {
                return Err(ConfigError::Invalid {
                    path: config_path.map(Path::to_path_buf).unwrap_or_default(),
                    message: "the API key must be at least 16 characters".into(),
                });
            }
        }
        Ok(())
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    /// The base image for builds: `BENTO_BASE_IMAGE`, then the config key,
    /// then the image's own `base`.
    pub fn base_image_for(&self, image: &ImageSpec) -> String {
        self.base_override()
            .map(|(base, _)| base)
            .unwrap_or_else(|| image.base.clone())
    }

    /// What overrides every image's own `base`, and where it is set
    /// (`BENTO_BASE_IMAGE` or `base_image`); `None` when nothing does.
    pub fn base_override(&self) -> Option<(String, &'static str)> {
        let env = std::env::var(BASE_IMAGE_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty());
        match (env, &self.base_image) {
            (Some(e), _) => Some((e, BASE_IMAGE_ENV)),
            (None, Some(b)) => Some((b.clone(), "base_image")),
            (None, None) => None,
        }
    }
}

/// `config/bento.yaml` → the repository root: the parent of a directory named
/// `config`, else the file's own directory.
fn config_root(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let root = match (dir.file_name(), dir.parent()) {
        (Some(n), Some(parent)) if n == "config" => parent,
        _ => dir,
    };
    if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root.to_path_buf()
    }
}

/// Overrides `label_prefix`, so that a second controller beside another
/// can be given its own without a config file.
pub const LABEL_PREFIX_ENV: &str = "BENTO_LABEL_PREFIX";

/// A Docker label key prefix in reverse-DNS style, as Docker recommends.
fn valid_label_prefix(p: &str) -> bool {
    let ok_end = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !p.is_empty()
        && p.len() <= 64
        && p.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
        && ok_end(p.as_bytes().first())
        && ok_end(p.as_bytes().last())
}

impl Config {
    /// The label every container this controller creates carries, naming
    /// the controller: reconcile removes only orphans carrying its own.
    pub fn controller_label(&self) -> (String, String) {
        (
            format!("{}.controller", self.label_prefix),
            self.controller_id.clone(),
        )
    }
}

/// Names of images, functions: short, safe in Docker tags, paths and URLs.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let p = Path::new("x.yaml");
        assert!(Config::parse("listen: 127.0.0.1:1\nsession_ttl: 1h\n", p).is_ok());
        assert!(Config::parse("lisen: 127.0.0.1:1\n", p).is_err());
        assert!(Config::parse("session_ttl: forever\n", p).is_err());
        assert!(Config::parse("", p).is_ok());
        let checked = |t: &str| Config::parse(t, p).map(|mut c| c.check());
        assert!(matches!(checked("header_timeout: 500ms\n"), Ok(Ok(()))));
        assert!(matches!(checked("header_timeout: 0\n"), Ok(Err(_))));
        assert!(matches!(checked("max_connections: 0\n"), Ok(Err(_))));
        assert!(matches!(checked("max_ended_sessions: 0\n"), Ok(Err(_))));
    }

    #[test]
    fn root_is_parent_of_config_dir() {
        assert_eq!(
            config_root(Path::new("config/bento.yaml")),
            PathBuf::from(".")
        );
        assert_eq!(
            config_root(Path::new("/srv/x/config/bento.yaml")),
            PathBuf::from("/srv/x")
        );
        assert_eq!(
            config_root(Path::new("/etc/bento.yaml")),
            PathBuf::from("/etc")
        );
    }

    #[test]
    fn label_prefixes_are_checked() {
        assert!(valid_label_prefix("dev.bento"));
        assert!(valid_label_prefix("test1a2b.bento"));
        assert!(!valid_label_prefix(""));
        assert!(!valid_label_prefix("Dev.bento"));
        assert!(!valid_label_prefix("dev.bento."));
        assert!(!valid_label_prefix("dev bento"));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("python"));
        assert!(valid_name("my-fn_2"));
        assert!(!valid_name("Python"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
