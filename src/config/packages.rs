//! Declared images: `packages:`, `files:` and `build:` in an image's YAML,
//! which Bento turns into a generated Dockerfile
//! (`runtime::images::generate`) instead of reading one from a context
//! directory. Everything here is checked when the config loads, because it
//! ends up in a shell command of the build: a name that could carry shell
//! syntax is refused, not quoted and hoped for.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Packages one image may declare, apt and pip together.
pub const MAX_PACKAGES: usize = 200;
/// The longest package name or pip requirement accepted.
pub const MAX_PACKAGE_LEN: usize = 200;
/// Files one image may declare.
pub const MAX_FILES: usize = 100;
/// The largest file (or CA bundle) copied into an image: the build context
/// is assembled in memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// `packages:` in an image's YAML.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Packages {
    /// Debian packages, installed with `apt-get install`.
    pub apt: Vec<String>,
    /// pip requirements (`numpy==2.*`, `requests>=2.31`), installed with
    /// `pip install` into the image's venv.
    pub pip: Vec<String>,
}

/// `build:` in an image's YAML or in `bento.yaml`: what the build (never a
/// session) trusts and where pip looks. An image's own values win.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BuildSettings {
    /// A PEM CA bundle on the host, for a TLS-intercepting proxy between
    /// the build and the package mirrors. Copied into the build context and
    /// handed to apt and pip for the build's own steps only.
    pub ca_bundle: Option<PathBuf>,
    /// The index pip installs from (`PIP_INDEX_URL`), e.g. a company mirror.
    pub pip_index_url: Option<String>,
}

impl BuildSettings {
    /// `self`, with `fallback`'s value where `self` has none.
    pub fn or(&self, fallback: &BuildSettings) -> BuildSettings {
        BuildSettings {
            ca_bundle: self
                .ca_bundle
                .clone()
                .or_else(|| fallback.ca_bundle.clone()),
            pip_index_url: self
                .pip_index_url
                .clone()
                .or_else(|| fallback.pip_index_url.clone()),
        }
    }

    /// Resolves the CA bundle against `root` and checks both values.
    pub fn check(&mut self, root: &Path) -> Result<(), String> {
        if let Some(ca) = &self.ca_bundle {
            let ca = if ca.is_absolute() {
                ca.clone()
            } else {
                root.join(ca)
            };
            host_file(&ca).map_err(|e| format!("build.ca_bundle: {e}"))?;
            self.ca_bundle = Some(ca);
        }
        if let Some(url) = &self.pip_index_url {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() <= 2048
                && url
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !shell_special(b));
            if !ok {
                return Err(format!(
                    "build.pip_index_url {url:?} must be an http(s) URL without spaces, \
                     quotes or shell characters"
                ));
            }
        }
        Ok(())
    }
}

/// Bytes that mean something to `/bin/sh` even inside a word.
fn shell_special(b: u8) -> bool {
    matches!(
        b,
        b'\'' | b'"' | b'`' | b'$' | b'\\' | b';' | b'&' | b'|' | b'(' | b')' | b'{' | b'}'
    ) || b.is_ascii_whitespace()
}

/// A Debian package name (Debian policy 5.6.1), optionally `=VERSION`.
fn apt_ok(p: &str) -> bool {
    let (name, version) = match p.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (p, None),
    };
    let name_ok = name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.~:".contains(&b))
    });
    name_ok && version_ok
}

/// A pip requirement: a name (PEP 508) and then version specifiers or
/// extras, with nothing a shell or pip's option parser would read as
/// anything else (no leading `-`, no URL, no path, no markers).
fn pip_ok(p: &str) -> bool {
    let name_end = p
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(p.len());
    let name = &p[..name_end];
    name.as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && p[name_end..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.=<>!~*,[]".contains(&b))
}

/// The package a requirement names: `numpy==2.*` → `numpy`.
pub fn pip_name(requirement: &str) -> &str {
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(requirement.len());
    &requirement[..end]
}

/// A regular file on the host no larger than [`MAX_FILE_BYTES`].
fn host_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes, more than the {} allowed",
            path.display(),
            meta.len(),
            MAX_FILE_BYTES
        ));
    }
    Ok(())
}

/// A destination in the image: absolute, plain components only, and
/// nothing the Dockerfile's COPY line could misread.
fn destination_ok(dest: &str) -> bool {
    dest.starts_with('/')
        && dest.len() > 1
        && dest.len() <= 1024
        && !dest.ends_with('/')
        && dest
            .split('/')
            .skip(1)
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && dest
            .bytes()
            .all(|b| b.is_ascii_graphic() && !shell_special(b) && !b"*?[]".contains(&b))
}

/// Checks a declaration and resolves its files' sources against `root`.
pub fn check(
    packages: &Packages,
    files: &mut BTreeMap<String, PathBuf>,
    root: &Path,
) -> Result<(), String> {
    let count = packages.apt.len() + packages.pip.len();
    if count > MAX_PACKAGES {
        return Err(format!(
            "{count} packages declared, more than {MAX_PACKAGES}"
        ));
    }
    for (kind, list, ok) in [
        ("apt", &packages.apt, apt_ok as fn(&str) -> bool),
        ("pip", &packages.pip, pip_ok),
    ] {
        if let Some(bad) = list.iter().find(|p| p.len() > MAX_PACKAGE_LEN || !ok(p)) {
            let example = if kind == "apt" {
                "libgomp1"
            } else {
                "numpy==2.*"
            };
            return Err(format!(
                "packages.{kind}: {bad:?} is not a package name or requirement \
                 (such as {example}; no spaces, quotes, options, URLs or shell characters)"
            ));
        }
    }
    if files.len() > MAX_FILES {
        return Err(format!(
            "{} files declared, more than {MAX_FILES}",
            files.len()
        ));
    }
    for (dest, source) in files.iter_mut() {
        if !destination_ok(dest) {
            return Err(format!(
                "files: destination {dest:?} must be an absolute path in the image, \
                 such as /opt/data/words.txt (no '..', spaces, quotes or wildcards)"
            ));
        }
        // A session gets fresh mounts there: a file copied into the image
        // at these places would never be seen.
        if let Some(hidden) = ["/tmp", "/dev", "/proc", "/sys"]
            .iter()
            .find(|m| dest.strip_prefix(**m).is_some_and(|r| r.starts_with('/')))
        {
            return Err(format!(
                "files: destination {dest:?} is under {hidden}, which every session \
                 mounts afresh; choose another place, such as /opt/data"
            ));
        }
        if !source.is_absolute() {
            *source = root.join(&*source);
        }
        host_file(source).map_err(|e| format!("files: {dest}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_requirements() {
        for good in ["libgomp1", "python3-six", "g++", "libc6=2.36-9+deb12u4"] {
            assert!(apt_ok(good), "{good}");
        }
        for bad in ["", "a", "-y", "x y", "a;b", "a$(id)", "A", "x\nrm", "a="] {
            assert!(!apt_ok(bad), "{bad:?}");
        }
        for good in ["numpy==2.*", "requests>=2.31", "six", "a.b_c-d[x,y]~=1.0"] {
            assert!(pip_ok(good), "{good}");
        }
        for bad in [
            "",
            "-r",
            "--index-url=x",
            "x y",
            "x;y",
            "x @ https://e",
            "./local",
            "a'b",
            "a\nb",
            "a>$(id)",
        ] {
            assert!(!pip_ok(bad), "{bad:?}");
        }
        assert_eq!(pip_name("numpy==2.*"), "numpy");
        assert_eq!(pip_name("a[x]>=1"), "a");
    }

    #[test]
    fn files_are_checked_and_resolved() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        std::fs::write(tmp.path().join("w.txt"), "words")?;
        std::fs::create_dir(tmp.path().join("dir"))?;
        let p = Packages::default();
        let mut ok = BTreeMap::from([("/opt/w.txt".to_string(), PathBuf::from("w.txt"))]);
        check(&p, &mut ok, tmp.path())?;
        assert_eq!(ok["/opt/w.txt"], tmp.path().join("w.txt"));
        for (dest, src, says) in [
            ("opt/w.txt", "w.txt", "absolute"),
            ("/opt/../etc/passwd", "w.txt", "absolute"),
            ("/opt/a b", "w.txt", "absolute"),
            ("/opt/", "w.txt", "absolute"),
            ("/opt/x", "missing.txt", "missing.txt"),
            ("/tmp/w.txt", "w.txt", "mounts afresh"),
            ("/opt/x", "dir", "not a file"),
        ] {
            let mut f = BTreeMap::from([(dest.to_string(), PathBuf::from(src))]);
            let e = check(&p, &mut f, tmp.path()).err().unwrap_or_default();
            assert!(e.contains(says), "{dest} {src}: {e}");
        }
        let many = Packages {
            apt: vec!["libgomp1".into(); MAX_PACKAGES + 1],
            pip: vec![],
        };
        let e = check(&many, &mut BTreeMap::new(), tmp.path()).err();
        assert!(e.is_some_and(|e| e.contains("more than")));
        Ok(())
    }

    #[test]
    fn build_settings() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        std::fs::write(tmp.path().join("ca.pem"), "pem")?;
        let mut s = BuildSettings {
            ca_bundle: Some("ca.pem".into()),
            pip_index_url: Some("https://pypi.example/simple".into()),
        };
        s.check(tmp.path())?;
        assert_eq!(s.ca_bundle, Some(tmp.path().join("ca.pem")));
        for url in ["ftp://x", "https://x/$(id)", "https://x y", "https://x'"] {
            let mut bad = BuildSettings {
                ca_bundle: None,
                pip_index_url: Some(url.into()),
            };
            assert!(bad.check(tmp.path()).is_err(), "{url}");
        }
        let mut missing = BuildSettings {
            ca_bundle: Some("nope.pem".into()),
            pip_index_url: None,
        };
        assert!(missing.check(tmp.path()).is_err());
        let merged = BuildSettings::default().or(&s);
        assert_eq!(merged, s);
        Ok(())
    }

    /// Through the loader: a declaration loads with its files resolved; a
    /// bad one, or one beside a Dockerfile context, does not, and says why.
    #[test]
    fn declared_images_load_or_say_why() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("images");
        std::fs::create_dir(&dir)?;
        std::fs::write(tmp.path().join("w.txt"), "w")?;
        let load = |yaml: &str| {
            std::fs::write(dir.join("x.yaml"), yaml).map_err(|e| e.to_string())?;
            super::super::image::load_images(&dir, tmp.path()).map_err(|e| e.to_string())
        };
        let ok = load(
            "name: x\npackages: {apt: [libgomp1], pip: [\"numpy==2.*\"]}\n\
             files: {/opt/w.txt: w.txt}\nbuild: {pip_index_url: \"https://m.example/simple\"}\n",
        )?;
        let x = &ok["x"];
        assert!(x.declared() && x.context.is_none());
        assert_eq!(x.files["/opt/w.txt"], tmp.path().join("w.txt"));
        for (yaml, says) in [
            (
                "name: x\ncontext: images/x\npackages: {apt: [jq]}\n",
                "exclude each other",
            ),
            (
                "name: x\npackages: {pip: [\"six; rm -rf /\"]}\n",
                "packages.pip",
            ),
            ("name: x\npackages: {apt: [\"jq\\nrm\"]}\n", "packages.apt"),
            ("name: x\npackages: {npm: [left-pad]}\n", "unknown field"),
            ("name: x\nfiles: {/opt/w.txt: nope.txt}\n", "nope.txt"),
            ("name: x\nbuild: {ca_bundle: nope.pem}\n", "build.ca_bundle"),
        ] {
            let e = load(yaml).err().unwrap_or_default();
            assert!(e.contains(says), "{yaml:?}: {e}");
        }
        Ok(())
    }
}
