//! The build context sent to Docker: an image's context directory at the
//! root of a tar, with the driver sources under `driver/`.

use super::ImageError;
use std::path::Path;

/// Files that only add noise (and cache misses) to a build.
fn skipped(name: &str) -> bool {
    matches!(
        name,
        "__pycache__" | ".git" | ".pytest_cache" | ".mypy_cache"
    ) || name.ends_with(".pyc")
}

/// Builds the context tar in memory. Headers are deterministic (fixed owner
/// and mtime), so an unchanged tree gives Docker the same context and its
/// layer cache holds; modes become 0644 (0755 for directories and
/// executables), so the copied files are readable by the unprivileged user
/// functions run as, whatever the checkout's umask was.
/// The driver's sources, which every function image needs, are there.
pub(super) fn check_driver_dir(driver_dir: &Path) -> Result<(), ImageError> {
    if driver_dir.is_dir() {
        return Ok(());
    }
    Err(ImageError::Context(format!(
        "driver directory {} not found",
        driver_dir.display()
    )))
}

pub fn context_tar(context: &Path, driver_dir: &Path) -> Result<Vec<u8>, ImageError> {
    if !context.join("Dockerfile").is_file() {
        return Err(ImageError::Context(format!(
            "no Dockerfile in {}",
            context.display()
        )));
    }
    check_driver_dir(driver_dir)?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    add_dir(&mut tar, context, "")?;
    add_dir(&mut tar, driver_dir, "driver")?;
    tar.into_inner()
        .map_err(|e| ImageError::Context(format!("cannot finish the build context: {e}")))
}

pub(super) fn add_dir(
    tar: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    prefix: &str,
) -> Result<(), ImageError> {
    let io_err = |path: &Path, e: std::io::Error| {
        ImageError::Context(format!("cannot read {}: {e}", path.display()))
    };
    if !prefix.is_empty() {
        tar.append_dir(prefix, dir).map_err(|e| io_err(dir, e))?;
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_err(dir, e))?;
    // Sorted, so the same tree always makes the same tar.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(ImageError::Context(format!(
                "{}: file names must be UTF-8",
                entry.path().display()
            )));
        };
        if skipped(name) {
            continue;
        }
        let path = entry.path();
        let inner = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        // Follows symlinks, as `docker build` copies what they point at.
        let meta = std::fs::metadata(&path).map_err(|e| io_err(&path, e))?;
        if meta.is_dir() {
            add_dir(tar, &path, &inner)?;
        } else if meta.is_file() {
            tar.append_path_with_name(&path, &inner)
                .map_err(|e| io_err(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        if let Ok(entries) = a.entries() {
            for e in entries.flatten() {
                if let Ok(p) = e.path() {
                    out.push(p.to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    #[test]
    fn lays_out_context_and_driver() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let ctx = tmp.path().join("ctx");
        let drv = tmp.path().join("drv");
        std::fs::create_dir_all(ctx.join("sub"))?;
        std::fs::create_dir_all(drv.join("__pycache__"))?;
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n")?;
        std::fs::write(ctx.join("sub/a.txt"), "a")?;
        std::fs::write(drv.join("bento_driver.py"), "pass\n")?;
        std::fs::write(drv.join("__pycache__/x.pyc"), "")?;
        let tar = context_tar(&ctx, &drv)?;
        assert_eq!(
            names(&tar),
            [
                "Dockerfile",
                "sub",
                "sub/a.txt",
                "driver",
                "driver/bento_driver.py"
            ]
        );
        // Deterministic: the same tree gives the same bytes.
        assert_eq!(tar, context_tar(&ctx, &drv)?);
        Ok(())
    }

    #[test]
    fn missing_dockerfile_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let err = context_tar(tmp.path(), tmp.path())
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("no Dockerfile")));
        Ok(())
    }
}
