//! Building function images: each image description's context directory
//! plus the driver (or, for a declared image, a generated context:
//! `generate`), built by the Docker engine with the base image as the
//! `BASE` build argument. Every image carries [`HASH_LABEL`], the hash of
//! what it was built from, so an unchanged one need not be built again.

mod context;
mod generate;
mod output;

pub use context::context_tar;
pub use generate::{dockerfile, failed_package, generated_tar};

use crate::config::{Config, ImageSpec, DEFAULT_BASE_IMAGE};
use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;

/// The longest a build may go without output before it counts as stuck.
const BUILD_SILENCE: std::time::Duration = std::time::Duration::from_secs(600);

/// The image label holding the hash of what the image was built from: the
/// whole build context (Dockerfile, generated or not, declared files, CA
/// bundle, driver) and the base, by name and by the engine's ID for it.
pub const HASH_LABEL: &str = "bento.build-hash";

/// The base `images/base/bootstrap.sh` makes from Debian packages where
/// nothing can be pulled (Python 3 on Debian bookworm).
pub const OFFLINE_BASE_IMAGE: &str = "bento/base:bookworm";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot reach Docker: {0}")]
    Unreachable(String),
    #[error("unknown image {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("build context: {0}")]
    Context(String),
    /// The build ran and failed; `output` is its last lines, `package`
    /// the apt or pip package the output says could not be installed.
    #[error("building {tag} failed: {message}{}", package.as_ref().map(|p| format!(" (package {p} could not be installed)")).unwrap_or_default())]
    Build {
        tag: String,
        message: String,
        output: Vec<String>,
        package: Option<String>,
    },
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
}

/// Connects to the engine named in the config (or `DOCKER_HOST`, or the
/// local socket) and agrees on an API version: the engine may be older than
/// the version bollard speaks by default.
pub async fn connect(config: &Config) -> Result<Docker, ImageError> {
    let docker = match &config.docker_host {
        Some(host) => Docker::connect_with_host(host),
        None => Docker::connect_with_defaults(),
    }
    .map_err(|e| ImageError::Unreachable(e.to_string()))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| ImageError::Unreachable(e.to_string()))
}

/// The specs named (all of them when `names` is empty), in config order.
pub fn select<'a>(config: &'a Config, names: &[String]) -> Result<Vec<&'a ImageSpec>, ImageError> {
    if names.is_empty() {
        return Ok(config.images.values().collect());
    }
    names
        .iter()
        .map(|n| {
            config.images.get(n).ok_or_else(|| ImageError::Unknown {
                name: n.clone(),
                known: config.images.keys().cloned().collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// Whether an image with this tag exists in the engine.
pub async fn image_exists(docker: &Docker, tag: &str) -> Result<bool, ImageError> {
    match docker.inspect_image(tag).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The base to build `spec` from: [`Config::base_image_for`], except where
/// that is the stock [`DEFAULT_BASE_IMAGE`] (`python:3.12-slim`), it is not
/// in the engine and the offline base [`OFFLINE_BASE_IMAGE`] is. There the
/// build would have to pull, which fails on a machine without a registry, so
/// the offline base is used and the note returned says so. Any other base
/// (from `BENTO_BASE_IMAGE`, `base_image:` or an image's `base:`) is used as
/// it is.
pub async fn choose_base(
    docker: &Docker,
    config: &Config,
    spec: &ImageSpec,
) -> Result<(String, Option<String>), ImageError> {
    let base = config.base_image_for(spec);
    if base != DEFAULT_BASE_IMAGE || image_exists(docker, &base).await? {
        return Ok((base, None));
    }
    if !image_exists(docker, OFFLINE_BASE_IMAGE).await? {
        return Ok((base, None));
    }
    let note = format!(
        "{base} is not in the Docker engine but {OFFLINE_BASE_IMAGE} (images/base/bootstrap.sh) \
         is: building from {OFFLINE_BASE_IMAGE} instead of pulling; BENTO_BASE_IMAGE or \
         base_image in bento.yaml chooses another"
    );
    Ok((OFFLINE_BASE_IMAGE.to_string(), Some(note)))
}

/// Builds `spec` as `spec.tag()` from [`Config::base_image_for`]. `progress`
/// gets every line of build output as it comes ("Step 2/5 : COPY ...",
/// command output, ...).
pub async fn build_image(
    docker: &Docker,
    config: &Config,
    spec: &ImageSpec,
    progress: impl FnMut(&str),
) -> Result<(), ImageError> {
    build_image_from(docker, config, spec, &config.base_image_for(spec), progress).await
}

/// An image's build context in memory, and its [`HASH_LABEL`] value.
pub struct Prepared {
    tar: Vec<u8>,
    pub hash: String,
}

/// The build context of `spec` (generated for a declared image) and the
/// hash of it with `base`. The base's engine ID is part of the hash where
/// the engine has it, so a rebuilt base rebuilds its images too.
pub async fn prepare(
    docker: &Docker,
    config: &Config,
    spec: &ImageSpec,
    base: &str,
) -> Result<Prepared, ImageError> {
    let tar = if spec.declared() {
        generated_tar(spec, &spec.build.or(&config.build), &config.driver_dir)?
    } else {
        let context_dir = spec
            .context
            .clone()
            .unwrap_or_else(|| config.root.join("images").join(&spec.name));
        context_tar(&context_dir, &config.driver_dir)?
    };
    let base_id = match docker.inspect_image(base).await {
        Ok(image) => image.id.unwrap_or_default(),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&tar);
    for part in [base, &base_id] {
        h.update(&[0]);
        h.update(part.as_bytes());
    }
    Ok(Prepared {
        tar,
        hash: format!("{:032x}", h.digest128()),
    })
}

/// Whether the engine has `tag` built from exactly `hash`.
pub async fn is_current(docker: &Docker, tag: &str, hash: &str) -> Result<bool, ImageError> {
    match docker.inspect_image(tag).await {
        Ok(image) => Ok(image
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(HASH_LABEL).cloned())
            .is_some_and(|h| h == hash)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// [`build_image`] from the given base (the build argument `BASE`).
pub async fn build_image_from(
    docker: &Docker,
    config: &Config,
    spec: &ImageSpec,
    base: &str,
    progress: impl FnMut(&str),
) -> Result<(), ImageError> {
    let prepared = prepare(docker, config, spec, base).await?;
    build_prepared(docker, spec, base, prepared, progress).await
}

/// Builds `spec` from a context [`prepare`] made, labelled with its hash.
pub async fn build_prepared(
    docker: &Docker,
    spec: &ImageSpec,
    base: &str,
    prepared: Prepared,
    mut progress: impl FnMut(&str),
) -> Result<(), ImageError> {
    let Prepared { tar, hash } = prepared;
    let tag = spec.tag();
    let options = BuildImageOptions {
        t: Some(tag.clone()),
        buildargs: Some(HashMap::from([("BASE".to_string(), base.to_string())])),
        labels: Some(HashMap::from([(HASH_LABEL.to_string(), hash)])),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut out = output::BuildOutput::default();
    let failed = |message: String, mut out: output::BuildOutput, progress: &mut dyn FnMut(&str)| {
        out.flush(progress);
        ImageError::Build {
            tag: tag.clone(),
            message,
            output: out.tail.into(),
            package: out.package,
        }
    };
    loop {
        // A build may take long (a large pip install), but one that says
        // nothing for this long is stuck (a mirror that never answers).
        let item = match tokio::time::timeout(BUILD_SILENCE, stream.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                let message = format!("no build output for {}s: given up", BUILD_SILENCE.as_secs());
                return Err(failed(message, out, &mut progress));
            }
        };
        let info = item.map_err(|e| match e {
            // The daemon's own words, without bollard's wrapping.
            bollard::errors::Error::DockerStreamError { error } => error,
            other => other.to_string(),
        });
        let info = match info {
            Ok(info) => info,
            Err(message) => return Err(failed(message, out, &mut progress)),
        };
        for text in [&info.stream, &info.status].into_iter().flatten() {
            out.push(text, &mut progress);
        }
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_else(|| "unknown error".into());
            return Err(failed(message.trim().to_string(), out, &mut progress));
        }
    }
    out.flush(&mut progress);
    Ok(())
}
