//! A session's container as a Swarm service: one task, never restarted,
//! stdin open, resources reserved and limited, the sandbox as far as a
//! service spec (API 1.41) can say it. What it cannot say is settled on the
//! node before START (`sandbox.rs`) and by the gate (`gate.rs`); see
//! `docs/scale-out.md`.

use bollard::models::{
    Limit, Mount, MountTmpfsOptions, MountType, NetworkAttachmentConfig, ResourceObject,
    ResourcesUlimits, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use std::time::Duration;

use super::gate;
use crate::runtime::docker::nano_cpus;
use crate::runtime::ContainerSpec;

/// The signal a task's container is "stopped" with when Swarm shuts the
/// task down (a drained node, a constraint no longer met). The driver
/// ignores it (its default action is to do nothing), so a drained node's
/// sessions run on; the controller ends a session by killing its container
/// on the node instead.
pub(super) const STOP_SIGNAL: &str = "SIGWINCH";

/// How long Swarm waits after [`STOP_SIGNAL`] before it kills the
/// container: the session's timeout and a minute more, or this when it
/// has none.
const STOP_GRACE_NO_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// File mode of `/tmp` and `/dev/shm`: 1777, as the engine makes them.
const TMPFS_MODE: i64 = 0o1777;

/// What the container must look like on its node: checked there before
/// START (`sandbox::verify`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expected {
    pub no_network: bool,
    pub read_only_root: bool,
    pub user: String,
    pub memory: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    pub nofile: i64,
    pub tmp_bytes: i64,
    pub shm_bytes: i64,
}

impl Expected {
    pub(super) fn of(spec: &ContainerSpec) -> Result<Expected, String> {
        let sb = &spec.sandbox;
        let size = |what: &str, s: &str| {
            crate::config::size_bytes(s)
                .and_then(|b| i64::try_from(b).ok())
                .ok_or_else(|| format!("sandbox.{what} {s:?} is not a size"))
        };
        Ok(Expected {
            no_network: sb.network == "none",
            read_only_root: sb.read_only_root,
            user: sb.user.clone(),
            memory: i64::try_from(spec.limits.memory).unwrap_or(i64::MAX),
            nano_cpus: nano_cpus(spec.limits.cpus),
            pids: spec.limits.pids,
            nofile: sb.nofile,
            tmp_bytes: size("tmp_size", &sb.tmp_size)?,
            shm_bytes: size("shm_size", &sb.shm_size)?,
        })
    }
}

fn tmpfs(target: &str, bytes: i64) -> Mount {
    Mount {
        target: Some(target.into()),
        typ: Some(MountType::TMPFS),
        // Mount options cannot be given in API 1.41; the engine's defaults
        // are nosuid,nodev,noexec, which is what Bento wants.
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: Some(bytes),
            mode: Some(TMPFS_MODE),
            options: None,
        }),
        ..Default::default()
    }
}

fn stop_grace(timeout: Duration) -> i64 {
    let grace = if timeout.is_zero() {
        STOP_GRACE_NO_TIMEOUT
    } else {
        timeout.saturating_add(Duration::from_secs(60))
    };
    i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX)
}

/// The service for `spec`, whose image runs `entrypoint` (its ENTRYPOINT
/// and CMD), behind the gate.
pub(super) fn service(
    spec: &ContainerSpec,
    expected: &Expected,
    entrypoint: &[String],
) -> ServiceSpec {
    let container = TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(spec.labels.clone()),
        command: Some(gate::command(expected.no_network, entrypoint)),
        user: Some(expected.user.clone()),
        open_stdin: Some(true),
        tty: Some(false),
        read_only: Some(expected.read_only_root),
        mounts: Some(vec![
            tmpfs("/tmp", expected.tmp_bytes),
            // Replaces the engine's own /dev/shm: a service spec has no
            // ShmSize.
            tmpfs("/dev/shm", expected.shm_bytes),
        ]),
        stop_signal: Some(STOP_SIGNAL.into()),
        stop_grace_period: Some(stop_grace(spec.limits.timeout)),
        capability_drop: Some(vec!["ALL".into()]),
        ulimits: Some(vec![ResourcesUlimits {
            name: Some("nofile".into()),
            soft: Some(expected.nofile),
            hard: Some(expected.nofile),
        }]),
        ..Default::default()
    };
    let resources = TaskSpecResources {
        limits: Some(Limit {
            nano_cpus: Some(expected.nano_cpus),
            memory_bytes: Some(expected.memory),
            pids: Some(expected.pids),
        }),
        // Reserved as much as it may use, so that Swarm places it where
        // that much is free.
        reservations: Some(ResourceObject {
            nano_cpus: Some(expected.nano_cpus),
            memory_bytes: Some(expected.memory),
            generic_resources: None,
        }),
        ..Default::default()
    };
    // `none` cannot be named in a service (Swarm knows no such network):
    // the task gets the node's default network, which the controller
    // disconnects before START. Any other network is asked for by name.
    let networks = (!expected.no_network).then(|| {
        vec![NetworkAttachmentConfig {
            target: Some(spec.sandbox.network.clone()),
            ..Default::default()
        }]
    });
    ServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(spec.labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: Some(resources),
            // A session must never run twice.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                max_attempts: Some(0),
                ..Default::default()
            }),
            // The controller reads output through the attach stream.
            log_driver: Some(TaskSpecLogDriver {
                name: Some("none".into()),
                options: None,
            }),
            networks,
            // The image's constraints, as they are.
            placement: (!spec.placement.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(spec.placement.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageSpec;
    use std::collections::HashMap;
    use std::path::Path;

    #[test]
    fn the_spec_says_what_it_can() {
        let image = ImageSpec::builtin_python(Path::new("."));
        let mut limits = image.limits.clone();
        limits.cpus = 0.25;
        limits.timeout = Duration::from_secs(30);
        let labels = HashMap::from([("dev.bento.session".to_string(), "s-1".to_string())]);
        let mut image = image;
        image.placement = vec!["node.labels.bento == true".into()];
        let spec = ContainerSpec::for_image(&image, "bento-s-1".into(), labels, limits);
        let expected = Expected::of(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert!(expected.no_network);
        let entry = vec!["python3".to_string(), "-c".into(), "pass".into()];
        let svc = service(&spec, &expected, &entry);
        let json = serde_json::to_value(&svc).unwrap_or_else(|e| panic!("{e}"));
        let t = &json["TaskTemplate"];
        let c = &t["ContainerSpec"];
        assert_eq!(c["OpenStdin"], true);
        assert_eq!(c["ReadOnly"], true);
        assert_eq!(c["User"], "65534:65534");
        assert_eq!(c["CapabilityDrop"], serde_json::json!(["ALL"]));
        assert_eq!(c["StopSignal"], STOP_SIGNAL);
        assert_eq!(c["StopGracePeriod"], 90_000_000_000i64);
        assert_eq!(c["Mounts"][0]["Target"], "/tmp");
        assert_eq!(c["Mounts"][1]["Target"], "/dev/shm");
        let cmd = c["Command"].as_array().map(Vec::len).unwrap_or(0);
        assert!(cmd > entry.len(), "the gate comes first: {c}");
        assert_eq!(t["RestartPolicy"]["Condition"], "none");
        assert_eq!(t["Resources"]["Limits"]["NanoCPUs"], 250_000_000);
        assert_eq!(t["Resources"]["Reservations"]["NanoCPUs"], 250_000_000);
        assert_eq!(t["Resources"]["Limits"]["Pids"], spec.limits.pids);
        assert_eq!(t["LogDriver"]["Name"], "none");
        assert!(t.get("Networks").is_none(), "none is not a swarm network");
        let constraints = &t["Placement"]["Constraints"];
        assert_eq!(
            constraints,
            &serde_json::json!(["node.labels.bento == true"])
        );
        assert_eq!(json["Mode"]["Replicated"]["Replicas"], 1);
        assert_eq!(json["Labels"]["dev.bento.session"], "s-1");
        assert_eq!(stop_grace(Duration::ZERO), 30 * 24 * 3600 * 1_000_000_000);
    }
}
