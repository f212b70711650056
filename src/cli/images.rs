//! `bento images build` and `bento images ls`.

use super::simple::print_json;
use super::table::render;
use super::{out, say};
use crate::config::{Config, Engine};
use crate::runtime::images::{self, ImageError};
use crate::runtime::swarm::{self, Copied};
use bollard::Docker;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) async fn build(
    names: &[String],
    config: Option<&Path>,
    force: bool,
) -> anyhow::Result<i32> {
    let config = Config::load(config)?;
    let specs = images::select(&config, names)?;
    let docker = images::connect(&config).await?;
    let tty = std::io::stdout().is_terminal();
    let mut failed = false;
    for spec in specs {
        let tag = spec.tag();
        let (base, note) = images::choose_base(&docker, &config, spec).await?;
        if let Some(note) = note {
            say(&format!("bento: {note}"));
        }
        let started = Instant::now();
        let prepared = images::prepare(&docker, &config, spec, &base).await?;
        let result = if !force && images::is_current(&docker, &tag, &prepared.hash).await? {
            // The engine's image was built from this very context and base.
            out(&format!(
                "unchanged: {tag} (base {base}, {} {}), skipped; --force builds it anyway",
                images::HASH_LABEL,
                prepared.hash
            ))?;
            Ok(false)
        } else {
            build_one(&tag, &base, tty, spec, &docker, prepared)
                .await
                .map(|()| true)
        };
        match result {
            Ok(built) => {
                if built {
                    out(&format!(
                        "built {tag} (base {base}) in {:.1}s",
                        started.elapsed().as_secs_f64()
                    ))?;
                }
                if config.engine == Engine::Swarm {
                    let copied = match &config.swarm.registry {
                        Some(_) => to_registry(&docker, &tag).await?,
                        None => to_every_node(&config, &docker, &tag).await?,
                    };
                    failed |= !copied;
                }
            }
            Err(ImageError::Build {
                tag,
                message,
                output,
                package,
            }) => {
                let at_from = output.last().is_some_and(|l| l.contains(" : FROM "));
                // A TLS-intercepting proxy the build does not trust: pip and
                // apt say so only deep in their output.
                let untrusted = output.iter().any(|l| {
                    l.contains("CERTIFICATE_VERIFY_FAILED")
                        || l.contains("Certificate verification failed")
                });
                if !output.is_empty() {
                    say("recent build output:");
                    for line in output {
                        say(&format!("  {line}"));
                    }
                }
                say(&format!("bento: building {tag} failed: {message}"));
                if let Some(package) = package {
                    say(&format!(
                        "bento: the package that failed: {package} (check its name and \
                         version, and that the build reaches its mirror: build.ca_bundle, \
                         build.pip_index_url)"
                    ));
                }
                if untrusted {
                    say(
                        "bento: the build does not trust a mirror's TLS certificate (a \
                         TLS-intercepting proxy?): name its CA bundle in build.ca_bundle \
                         (docs/images.md)",
                    );
                }
                if at_from {
                    // Nothing can be pulled on an offline machine: the usual
                    // first-run failure, so say what to do about it.
                    say(&format!(
                        "bento: the base image {base} must exist locally (or be pullable); \
                         choose another with BENTO_BASE_IMAGE or base_image in bento.yaml"
                    ));
                }
                return Ok(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// Builds one prepared image, showing its steps on a spinner (a terminal)
/// or as lines.
async fn build_one(
    tag: &str,
    base: &str,
    tty: bool,
    spec: &crate::config::ImageSpec,
    docker: &Docker,
    prepared: images::Prepared,
) -> Result<(), ImageError> {
    let bar = tty.then(|| spinner(tag));
    if bar.is_none() {
        let _ = out(&format!("building {tag} (base {base})"));
    }
    let result = images::build_prepared(docker, spec, base, prepared, |line| {
        if !line.starts_with("Step ") {
            return;
        }
        match &bar {
            Some(bar) => bar.set_message(line.to_string()),
            None => {
                let _ = out(line);
            }
        }
    })
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result
}

/// With `engine: swarm` and `swarm.registry`, pushes the image just built;
/// the nodes pull it when they first run it. False when that failed.
async fn to_registry(docker: &Docker, tag: &str) -> anyhow::Result<bool> {
    out(&format!("pushing {tag}"))?;
    match swarm::push(docker, tag).await {
        Ok(took) => {
            out(&format!("pushed {tag} in {:.1}s", took.as_secs_f64()))?;
            Ok(true)
        }
        Err(e) => {
            say(&format!("bento: {e}"));
            Ok(false)
        }
    }
}

/// With `engine: swarm` and no registry, loads the image just built on
/// every node of the Swarm that lacks it, and prints each node's outcome.
/// False when a node that is up could not get it.
async fn to_every_node(config: &Config, docker: &Docker, tag: &str) -> anyhow::Result<bool> {
    out(&format!("copying {tag} to the Swarm's nodes"))?;
    let copies = swarm::put_on_every_node(&config.swarm, docker, tag).await?;
    let mut ok = true;
    for copy in &copies {
        match &copy.copied {
            Copied::Failed(_) => {
                ok = false;
                say(&format!("bento: {tag} on {copy}"));
            }
            Copied::Skipped(_) => say(&format!("bento: {tag} on {copy}")),
            Copied::AlreadyThere | Copied::Loaded { .. } => out(&format!("  {copy}"))?,
        }
    }
    if copies.is_empty() {
        say("bento: the Swarm manager reports no nodes");
        ok = false;
    }
    Ok(ok)
}

fn spinner(tag: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    let style = ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(format!("building {tag}"));
    bar.set_message("sending the build context");
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// One image, as `images ls --json` prints it.
#[derive(serde::Serialize)]
struct ImageRow {
    name: String,
    tag: String,
    /// `null` when Docker could not be asked.
    built: Option<bool>,
    /// The base a build uses.
    base: String,
    /// Where `base` comes from: `BENTO_BASE_IMAGE`, `base_image` (in
    /// bento.yaml), or `image` (the image's own YAML).
    base_from: &'static str,
    /// The base the image's own YAML names.
    yaml_base: String,
}

pub(super) async fn list(config: Option<&Path>, json: bool) -> anyhow::Result<i32> {
    let config = Config::load(config)?;
    // The list is useful without Docker too; only the BUILT column needs it.
    let docker = match images::connect(&config).await {
        Ok(d) => Some(d),
        Err(e) => {
            say(&format!("bento: {e}"));
            None
        }
    };
    let mut images = Vec::new();
    for spec in config.images.values() {
        let tag = spec.tag();
        let built = match &docker {
            Some(d) => match images::image_exists(d, &tag).await {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(%tag, "cannot inspect: {e}");
                    None
                }
            },
            None => None,
        };
        let (base, base_from) = config
            .base_override()
            .unwrap_or_else(|| (spec.base.clone(), "image"));
        images.push(ImageRow {
            name: spec.name.clone(),
            tag,
            built,
            base,
            base_from,
            yaml_base: spec.base.clone(),
        });
    }
    if json {
        return print_json(&serde_json::to_string(&images)?);
    }
    let rows: Vec<Vec<String>> = images
        .into_iter()
        .map(|i| {
            let built = match i.built {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            };
            // An override says so, so that nobody wonders why the YAML's
            // base is not the one built on.
            let base = match i.base_from {
                "image" => i.base,
                from => format!("{} (from {from}; the YAML says {})", i.base, i.yaml_base),
            };
            vec![i.name, i.tag, built.to_string(), base]
        })
        .collect();
    out(render(&["NAME", "TAG", "BUILT", "BASE"], &rows).trim_end())?;
    Ok(0)
}
