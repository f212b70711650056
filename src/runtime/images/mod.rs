//! Building function images: each image description's context directory
//! plus the driver, built by the Docker engine with the base image as the
//! `BASE` build argument.

mod context;

pub use context::context_tar;

use crate::config::{Config, ImageSpec, DEFAULT_BASE_IMAGE};
use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};

/// Lines of build output kept to explain a failure.
const OUTPUT_TAIL: usize = 30;

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
    /// The build ran and failed; `output` is its last lines.
    #[error("building {tag} failed: {message}")]
    Build {
        tag: String,
        message: String,
        output: Vec<String>,
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

/// [`build_image`] from the given base (the build argument `BASE`).
pub async fn build_image_from(
    docker: &Docker,
    config: &Config,
    spec: &ImageSpec,
    base: &str,
    mut progress: impl FnMut(&str),
) -> Result<(), ImageError> {
    let context_dir = spec
        .context
        .clone()
        .unwrap_or_else(|| config.root.join("images").join(&spec.name));
    let tar = context_tar(&context_dir, &config.driver_dir)?;
    let tag = spec.tag();
    let options = BuildImageOptions {
        t: Some(tag.clone()),
        buildargs: Some(HashMap::from([("BASE".to_string(), base.to_string())])),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut tail = VecDeque::with_capacity(OUTPUT_TAIL);
    let failed = |message: String, tail: VecDeque<String>| ImageError::Build {
        tag: tag.clone(),
        message,
        output: tail.into(),
    };
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| match e {
            // The daemon's own words, without bollard's wrapping.
            bollard::errors::Error::DockerStreamError { error } => error,
            other => other.to_string(),
        });
        let info = match info {
            Ok(info) => info,
            Err(message) => return Err(failed(message, tail)),
        };
        for text in [&info.stream, &info.status].into_iter().flatten() {
            for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                if tail.len() == OUTPUT_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.to_string());
                progress(line);
            }
        }
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_else(|| "unknown error".into());
            return Err(failed(message.trim().to_string(), tail));
        }
    }
    Ok(())
}
