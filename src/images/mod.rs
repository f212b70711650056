//! Building function images: each image description's context directory
//! plus the driver, built by the Docker engine with the base image as the
//! `BASE` build argument.

mod context;

pub use context::context_tar;

use crate::config::{Config, ImageSpec};
use bollard::query_parameters::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};

/// Lines of build output kept to explain a failure.
const OUTPUT_TAIL: usize = 30;

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

/// Builds `spec` as `spec.tag()`. `progress` gets every line of build
/// output as it comes ("Step 2/5 : COPY ...", command output, ...).
pub async fn build_image(
    docker: &Docker,
    config: &Config,
    spec: &ImageSpec,
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
        buildargs: Some(HashMap::from([(
            "BASE".to_string(),
            config.base_image_for(spec),
        )])),
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
