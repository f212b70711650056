//! Function images: `config/images/NAME.yaml`. Each holds the image's
//! build context, its base, the sandbox its containers get and their limits:
//! the defaults a run gets and the maximums a run may ask for.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::packages::{self, BuildSettings, Packages};
use super::{valid_name, ConfigError, DEFAULT_BASE_IMAGE};
use crate::wire::api::{Limits, LimitsRequest};
use crate::wire::duration::de_duration;
use std::time::Duration;

/// A function image, from `config/images/NAME.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Name used by `--image` and `bento images build NAME`.
    pub name: String,
    /// Build context directory (holds the Dockerfile); unset (and refused)
    /// for a declared image, whose context is generated.
    #[serde(default)]
    pub context: Option<PathBuf>,
    /// Base image passed to the Dockerfile as the `BASE` build argument.
    #[serde(default = "default_base")]
    pub base: String,
    /// The runtime inside the image; only `python3` for now.
    #[serde(default = "default_runtime")]
    pub runtime: String,
    /// Limits a session gets unless its run asks for others.
    #[serde(default)]
    pub limits: Limits,
    /// The most a run may ask for; unset, runs may only lower the defaults.
    #[serde(default)]
    pub max: Option<Limits>,
    /// The container's isolation; the defaults are the strict ones.
    #[serde(default)]
    pub sandbox: Sandbox,
    /// When a session's timeout or idle timeout ends it, the function is
    /// sent SIGTERM and killed this long after, unless it has ended by
    /// then (docs/leases.md). At most [`MAX_STOP_GRACE`]; 0 kills at once.
    #[serde(default = "default_stop_grace", deserialize_with = "de_duration")]
    pub stop_grace: Duration,
    /// Containers kept created, started and waiting for a function, so a
    /// session with the default limits starts without a container start.
    /// Each serves one session only. 0: no pool.
    #[serde(default)]
    pub warm: usize,
    /// Placement constraints for `engine: swarm`, passed to Swarm as they
    /// are (`node.labels.bento == true`, `node.role != manager`). The
    /// Docker engine has one node and ignores them.
    #[serde(default)]
    pub placement: Vec<String>,
    /// Environment variables every session of the image gets; a run's own
    /// (`bento run -e`, the API's `env`) win over these (`docs/env.md`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `swarm.registry` under `engine: swarm`: the image is named in it.
    #[serde(skip)]
    pub registry: Option<String>,
    /// Declared packages: with these (or `files`) the Dockerfile is
    /// generated (`runtime::images::generate`) and `context` must be unset.
    #[serde(default)]
    pub packages: Option<Packages>,
    /// Files copied into a declared image: destination in the image →
    /// source on the host (relative to the repository root).
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// The CA bundle and pip index of this image's build; unset values come
    /// from `build:` in `bento.yaml`.
    #[serde(default)]
    pub build: BuildSettings,
}

/// A Swarm placement constraint: `ATTRIBUTE == VALUE` or `!=`, where Swarm
/// checks the rest (it refuses a service whose constraint it cannot read).
fn placement_ok(c: &str) -> bool {
    let parts: Vec<&str> = if c.contains("==") {
        c.splitn(2, "==").collect()
    } else {
        c.splitn(2, "!=").collect()
    };
    c.len() <= 256 && parts.len() == 2 && parts.iter().all(|p| !p.trim().is_empty())
}

/// The smallest CPU share a container may get: Docker's own minimum. Below
/// it `NanoCpus` would round to 0, which the engine reads as "no limit".
pub const MIN_CPUS: f64 = 0.01;

/// A CPU count the engine can enforce: a number, and not below [`MIN_CPUS`]
/// (NaN and infinities fail here too: NaN compares false, inf is not finite).
fn cpus_ok(c: f64) -> bool {
    c.is_finite() && c >= MIN_CPUS
}

/// The longest `stop_grace` an image may give its functions: a stop
/// should not wait on a function for long.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(300);

/// What a function gets to save its work between SIGTERM and the kill.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

fn default_stop_grace() -> Duration {
    DEFAULT_STOP_GRACE
}

/// The most warm containers one image may keep.
pub const MAX_WARM: usize = 64;

fn default_base() -> String {
    DEFAULT_BASE_IMAGE.into()
}
fn default_runtime() -> String {
    "python3".into()
}

impl ImageSpec {
    pub fn builtin_python(root: &Path) -> ImageSpec {
        ImageSpec {
            name: "python".into(),
            context: Some(root.join("images/python")),
            base: default_base(),
            runtime: default_runtime(),
            limits: Limits::default(),
            max: None,
            sandbox: Sandbox::default(),
            stop_grace: DEFAULT_STOP_GRACE,
            warm: 0,
            placement: Vec::new(),
            env: BTreeMap::new(),
            registry: None,
            packages: None,
            files: BTreeMap::new(),
            build: BuildSettings::default(),
        }
    }

    /// Whether the image is declared (`packages:` or `files:`) rather than
    /// built from a Dockerfile in `context`.
    pub fn declared(&self) -> bool {
        self.packages.is_some() || !self.files.is_empty()
    }

    /// The most a run may ask for.
    pub fn max_limits(&self) -> &Limits {
        self.max.as_ref().unwrap_or(&self.limits)
    }

    /// The limits of one run: the image's defaults, with what the run asked
    /// for where it asked, each checked against the image's maximum.
    pub fn resolve_limits(&self, req: &LimitsRequest) -> Result<Limits, String> {
        let max = self.max_limits();
        let mut l = self.limits.clone();
        if let Some(m) = req.memory {
            if m < 8 << 20 {
                return Err(format!("memory {} is below the minimum of 8 MiB", size(m)));
            }
            if m > max.memory {
                return Err(format!(
                    "memory {} is above the image's maximum of {}",
                    size(m),
                    size(max.memory)
                ));
            }
            l.memory = m;
        }
        // The image's own values are checked here too, so that a YAML with
        // `cpus: 1e-12` fails at config load rather than running unlimited.
        for (what, c) in [("cpus", l.cpus), ("max cpus", max.cpus)] {
            if !cpus_ok(c) {
                return Err(format!(
                    "the image's {what} {c} is below the minimum {MIN_CPUS} (or not a number)"
                ));
            }
        }
        if let Some(c) = req.cpus {
            if !(cpus_ok(c) && c <= max.cpus) {
                return Err(if cpus_ok(c) {
                    format!("cpus {c} is above the image's maximum of {}", max.cpus)
                } else {
                    format!("cpus {c} is below the engine's minimum of {MIN_CPUS}")
                });
            }
            l.cpus = c;
        }
        if let Some(p) = req.pids {
            if p < 1 {
                return Err("pids 0 is below the minimum of 1".into());
            }
            if p > max.pids {
                return Err(format!(
                    "pids {p} is above the image's maximum of {}",
                    max.pids
                ));
            }
            l.pids = p;
        }
        if let Some(t) = req.timeout {
            let unlimited_max = max.timeout.is_zero();
            if t.is_zero() && !unlimited_max {
                return Err("timeout 0 (none) is not allowed by this image".into());
            }
            if !unlimited_max && t > max.timeout {
                return Err(format!(
                    "timeout {} is above the image's maximum of {}",
                    span(t),
                    span(max.timeout)
                ));
            }
            l.timeout = t;
        }
        // The image's own default first: with a maximum set, sessions
        // without an idle timeout are not allowed.
        let idle = req.idle_timeout.unwrap_or(l.idle_timeout);
        let idle_max = max.idle_timeout;
        if !idle_max.is_zero() {
            if idle.is_zero() {
                return Err(format!(
                    "idle_timeout 0 (none) is not allowed by this image (at most {})",
                    span(idle_max)
                ));
            }
            if idle > idle_max {
                return Err(format!(
                    "idle_timeout {} is above the image's maximum of {}",
                    span(idle),
                    span(idle_max)
                ));
            }
        }
        l.idle_timeout = idle;
        Ok(l)
    }

    /// The Docker tag function containers of this image run from.
    pub fn tag(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/bento/{}:latest", self.name),
            None => format!("bento/{}:latest", self.name),
        }
    }
}

/// A container's isolation. Every default is the strict choice; an image's
/// YAML may relax them, and `docs/security.md` says what each one costs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Sandbox {
    /// `none` (no network at all), `bridge`, or the name of a Docker network.
    pub network: String,
    /// Mount the image's root filesystem read-only.
    pub read_only_root: bool,
    /// Size of the writable tmpfs at `/tmp`, e.g. `64m`.
    pub tmp_size: String,
    /// Size of `/dev/shm`, e.g. `64m`: the engine mounts it in every
    /// container (`nosuid,nodev,noexec`), and Python's multiprocessing
    /// needs it for its locks and queues, so it is bounded rather than removed.
    pub shm_size: String,
    /// User the function runs as, `uid:gid`. Root (`0`) is refused.
    pub user: String,
    /// Open files per process.
    pub nofile: i64,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            network: "none".into(),
            read_only_root: true,
            tmp_size: "64m".into(),
            shm_size: "64m".into(),
            user: "65534:65534".into(),
            nofile: 1024,
        }
    }
}

impl Sandbox {
    fn check(&self) -> Result<(), String> {
        let uid = self.user.split(':').next().unwrap_or("");
        if uid.is_empty() || uid == "0" || uid == "root" {
            return Err(format!(
                "sandbox.user {:?}: functions never run as root",
                self.user
            ));
        }
        // 0 would not be small: tmpfs reads size=0 as no limit, and the
        // engine reads ShmSize 0 as its default.
        for (key, size) in [("tmp_size", &self.tmp_size), ("shm_size", &self.shm_size)] {
            if size_bytes(size).is_none_or(|b| b < 1 << 20) {
                return Err(format!(
                    "sandbox.{key} {size:?}: use a size of at least 1m, such as 64m"
                ));
            }
        }
        if self.network.is_empty() || self.network.contains(char::is_whitespace) {
            return Err(format!(
                "sandbox.network {:?} is not a network name",
                self.network
            ));
        }
        if self.nofile < 16 {
            return Err("sandbox.nofile must be at least 16".into());
        }
        Ok(())
    }
}

/// `64m` → 67108864: digits and one unit (`k`, `m` or `g`, binary, as the
/// engine's), or bytes without one.
pub(crate) fn size_bytes(size: &str) -> Option<u64> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let shift = match &size[digits.len()..] {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

pub(crate) fn load_images(
    dir: &Path,
    root: &Path,
) -> Result<BTreeMap<String, ImageSpec>, ConfigError> {
    let mut images = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(images),
        Err(source) => {
            return Err(ConfigError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut spec: ImageSpec =
            serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.clone(),
            message,
        };
        if !valid_name(&spec.name) {
            return Err(invalid(format!(
                "image name {:?} must be 1-64 lowercase letters, digits, '-' or '_'",
                spec.name
            )));
        }
        spec.sandbox.check().map_err(invalid)?;
        if spec.stop_grace > MAX_STOP_GRACE {
            return Err(invalid(format!(
                "stop_grace {} is more than {}",
                span(spec.stop_grace),
                span(MAX_STOP_GRACE)
            )));
        }
        if spec.warm > MAX_WARM {
            return Err(invalid(format!(
                "warm {} is more than {MAX_WARM} containers",
                spec.warm
            )));
        }
        if let Some(bad) = spec.placement.iter().find(|c| !placement_ok(c)) {
            return Err(invalid(format!(
                "placement {bad:?} must be ATTRIBUTE == VALUE or ATTRIBUTE != VALUE, \
                 e.g. node.labels.bento == true"
            )));
        }
        super::env::check_env(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| invalid(format!("env: {e}")))?;
        if let Err(e) = spec.resolve_limits(&LimitsRequest::default()) {
            return Err(invalid(format!("limits: {e}")));
        }
        if images.contains_key(&spec.name) {
            return Err(invalid(format!("image {} is described twice", spec.name)));
        }
        spec.build.check(root).map_err(invalid)?;
        if spec.declared() {
            // One or the other: a Dockerfile can install what it likes
            // itself, and mixing the two would leave nobody sure which
            // step installs what.
            if spec.context.is_some() {
                return Err(invalid(
                    "context (a Dockerfile) and packages/files (a generated one) exclude \
                     each other: install the packages in the Dockerfile, or drop context"
                        .into(),
                ));
            }
            let declared = spec.packages.clone().unwrap_or_default();
            packages::check(&declared, &mut spec.files, root).map_err(invalid)?;
            images.insert(spec.name.clone(), spec);
            continue;
        }
        let context = spec
            .context
            .clone()
            .unwrap_or_else(|| PathBuf::from("images").join(&spec.name));
        spec.context = Some(if context.is_absolute() {
            context
        } else {
            root.join(context)
        });
        images.insert(spec.name.clone(), spec);
    }
    Ok(images)
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;

/// Bytes in the largest binary unit that keeps them readable: `8 GiB`,
/// `1.5 GiB`, `300 MiB`, `4097 B`.
pub fn size(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, scale) in UNITS {
        if n >= scale {
            if n.is_multiple_of(scale) {
                return format!("{} {unit}", n / scale);
            }
            let tenths = n * 10 / scale;
            if tenths * scale == n * 10 {
                return format!("{}.{} {unit}", tenths / 10, tenths % 10);
            }
        }
    }
    format!("{n} B")
}

/// A duration as it is written in the config: `90s`, `30m`, `2h`, `30d`.
fn span(d: Duration) -> String {
    crate::wire::duration::span(d.as_secs())
}
