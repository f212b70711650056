//! Tests of image descriptions: limits a run may ask for, the sandbox.

use super::*;
use std::time::Duration;

fn spec(yaml: &str) -> ImageSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn runs_may_ask_within_the_maximums() {
    let s = spec("name: p\nlimits: {memory: 67108864, timeout: 10s}\nmax: {memory: 134217728, timeout: 60s}\n");
    let ok = s.resolve_limits(&LimitsRequest {
        memory: Some(100 << 20),
        timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    assert_eq!(
        ok.map(|l| (l.memory, l.timeout.as_secs())),
        Ok((100 << 20, 30))
    );
    let too_much = s.resolve_limits(&LimitsRequest {
        memory: Some(1 << 30),
        ..Default::default()
    });
    assert!(too_much.is_err_and(|e| e.contains("memory")));
    let forever = s.resolve_limits(&LimitsRequest {
        timeout: Some(Duration::ZERO),
        ..Default::default()
    });
    assert!(forever.is_err());
}

#[test]
fn sub_second_timeouts_round_up_on_the_wire() {
    let req = LimitsRequest {
        timeout: Some(Duration::from_millis(500)),
        ..Default::default()
    };
    let json = serde_json::to_string(&req).unwrap_or_default();
    assert_eq!(json, r#"{"timeout":1}"#);
    let bad = spec("name: p\nlimits: {cpus: .nan}\n");
    assert!(bad.resolve_limits(&LimitsRequest::default()).is_err());
}

#[test]
fn without_maximums_runs_may_only_lower() {
    let s = spec("name: p\nlimits: {pids: 64}\n");
    let lower = LimitsRequest {
        pids: Some(10),
        ..Default::default()
    };
    let higher = LimitsRequest {
        pids: Some(100),
        ..Default::default()
    };
    assert!(s.resolve_limits(&lower).is_ok());
    assert!(s.resolve_limits(&higher).is_err());
}

#[test]
fn the_sandbox_refuses_root_and_nonsense() {
    assert!(Sandbox::default().check().is_ok());
    let root = Sandbox {
        user: "0:0".into(),
        ..Sandbox::default()
    };
    assert!(root.check().is_err());
    let tmp = Sandbox {
        tmp_size: "lots".into(),
        ..Sandbox::default()
    };
    assert!(tmp.check().is_err());
    assert!(serde_yaml::from_str::<Sandbox>("network: bridge\n").is_ok());
    assert!(serde_yaml::from_str::<Sandbox>("privileged: true\n").is_err());
}

fn cpus(c: f64) -> LimitsRequest {
    LimitsRequest {
        cpus: Some(c),
        ..Default::default()
    }
}

#[test]
fn cpus_below_the_engines_minimum_are_refused() {
    let s = spec("name: p\nmax: {cpus: 2.0}\n");
    // Each of these became NanoCpus 0, which Docker reads as no limit.
    for tiny in [
        1e-300,
        1e-10,
        0.001,
        0.0099,
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
    ] {
        match s.resolve_limits(&cpus(tiny)) {
            Ok(l) => panic!("cpus {tiny} accepted as {}", l.cpus),
            Err(e) => assert!(e.contains("cpus") && e.contains("0.01"), "{tiny}: {e}"),
        }
    }
    assert_eq!(s.resolve_limits(&cpus(MIN_CPUS)).map(|l| l.cpus), Ok(0.01));
    assert_eq!(s.resolve_limits(&cpus(2.0)).map(|l| l.cpus), Ok(2.0));
    assert!(s.resolve_limits(&cpus(2.01)).is_err());
}

/// One image YAML in a directory of its own, loaded as `bento serve` does.
fn load(yaml: &str) -> Result<BTreeMap<String, ImageSpec>, ConfigError> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap_or_else(|e| panic!("write: {e}"));
    load_images(dir.path(), dir.path())
}

#[test]
fn an_image_whose_own_cpus_are_below_the_minimum_does_not_load() {
    assert!(load("name: p\nlimits: {cpus: 0.5}\nmax: {cpus: 1.0}\n").is_ok());
    for yaml in [
        "name: p\nlimits: {cpus: 1.0e-12}\n",
        "name: p\nlimits: {cpus: 0.005}\nmax: {cpus: 1.0}\n",
        "name: p\nmax: {cpus: 1.0e-300}\n",
        "name: p\nlimits: {cpus: .nan}\n",
        "name: p\nmax: {cpus: .inf}\n",
    ] {
        match load(yaml) {
            Ok(_) => panic!("loaded: {yaml}"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("cpus") && e.contains("0.01"), "{yaml}: {e}");
            }
        }
    }
}

#[test]
fn sandbox_sizes_are_bounded_and_never_zero() {
    assert_eq!(size_bytes("64m"), Some(64 << 20));
    assert_eq!(size_bytes("1g"), Some(1 << 30));
    assert_eq!(size_bytes("512k"), Some(512 << 10));
    assert_eq!(size_bytes("1048576"), Some(1 << 20));
    for bad in [
        "",
        "m",
        "64mk",
        "64M",
        "-1m",
        "64 m",
        "6.4m",
        "99999999999999999999g",
    ] {
        assert_eq!(size_bytes(bad), None, "{bad:?}");
    }
    for (tmp, shm) in [
        ("0", "64m"),
        ("64m", "0"),
        ("64m", "0m"),
        ("64m", "512k"),
        ("64mk", "64m"),
    ] {
        let s = Sandbox {
            tmp_size: tmp.into(),
            shm_size: shm.into(),
            ..Sandbox::default()
        };
        assert!(s.check().is_err(), "tmp {tmp:?}, shm {shm:?}");
    }
    let s: Sandbox = serde_yaml::from_str("shm_size: 16m\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(s.check().is_ok());
    assert_eq!(s.shm_size, "16m");
}

#[test]
fn limit_errors_speak_in_units() {
    assert_eq!(size(8 << 30), "8 GiB");
    assert_eq!(size(3 << 29), "1.5 GiB");
    assert_eq!(size(300 << 20), "300 MiB");
    assert_eq!(size((1 << 20) + 1), "1048577 B");
    assert_eq!(span(std::time::Duration::from_secs(30 * 86_400)), "30d");
    assert_eq!(span(std::time::Duration::from_secs(90)), "90s");
    let s = spec("name: p\nlimits: {memory: 67108864, timeout: 10s}\nmax: {memory: 134217728, timeout: 60s, pids: 64}\n");
    let err = |req: LimitsRequest| s.resolve_limits(&req).err().unwrap_or_default();
    assert_eq!(
        err(LimitsRequest {
            memory: Some(1 << 30),
            ..Default::default()
        }),
        "memory 1 GiB is above the image's maximum of 128 MiB"
    );
    assert_eq!(
        err(LimitsRequest {
            memory: Some(1 << 20),
            ..Default::default()
        }),
        "memory 1 MiB is below the minimum of 8 MiB"
    );
    assert_eq!(
        err(LimitsRequest {
            timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        }),
        "timeout 2m is above the image's maximum of 1m"
    );
    assert_eq!(
        err(LimitsRequest {
            pids: Some(65),
            ..Default::default()
        }),
        "pids 65 is above the image's maximum of 64"
    );
}

#[test]
fn placement_constraints_are_checked_and_kept() {
    let ok = load("name: p\nplacement: [\"node.labels.bento == true\", \"node.role!=manager\"]\n");
    let images = ok.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(images["p"].placement.len(), 2);
    for bad in ["\"node.labels.bento\"", "\"== true\"", "\"node.role != \""] {
        let e = load(&format!("name: p\nplacement: [{bad}]\n"));
        assert!(
            e.is_err_and(|e| e.to_string().contains("placement")),
            "{bad}"
        );
    }
}
