//! The sandbox on the task's node, before START: what a service spec cannot
//! say is fixed through the node's engine API, then every property is
//! checked on the container as the node made it. Swarm drops fields it does
//! not know without a word, and a node's daemon.json can change defaults,
//! so nothing is taken on trust. A mismatch fails the session's start:
//! nothing of the function has run (the gate is still closed).

use bollard::models::{ContainerInspectResponse, ContainerUpdateBody, NetworkDisconnectRequest};
use bollard::Docker;
use std::time::Duration;

use super::call::within;
use super::spec::Expected;
use crate::runtime::{Result, RuntimeError};

/// Brings the container `id` on `node` (named `node_name` in errors) to
/// `expected`, and checks that it is.
pub(super) async fn prepare(
    node: &Docker,
    node_name: &str,
    id: &str,
    expected: &Expected,
    deadline: Duration,
) -> Result<()> {
    let inspect = |what: &'static str| {
        within(
            deadline,
            format!("node {node_name}: {what}"),
            node.inspect_container(id, None),
        )
    };
    let before = inspect("inspect").await?;
    // `network: none` cannot be named in a service: the task got the node's
    // default network, if it has one. Disconnected while the gate is shut.
    if expected.no_network && !network_disabled(&before) {
        for net in networks(&before) {
            let body = NetworkDisconnectRequest {
                container: id.to_string(),
                force: Some(true),
            };
            within(
                deadline,
                format!("node {node_name}: disconnect from {net}"),
                node.disconnect_network(&net, body),
            )
            .await?;
        }
    }
    // A service's memory limit comes with twice as much swap; no swap is
    // allowed beyond the limit.
    let memory = host(&before).and_then(|h| h.memory_swap);
    if memory != Some(expected.memory) {
        let body = ContainerUpdateBody {
            memory: Some(expected.memory),
            memory_swap: Some(expected.memory),
            ..Default::default()
        };
        within(
            deadline,
            format!("node {node_name}: update"),
            node.update_container(id, body),
        )
        .await?;
    }
    let after = inspect("inspect").await?;
    let wrong = mismatches(&after, expected);
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::Engine(format!(
            "the sandbox does not hold on node {node_name} ({}); the function was not run",
            wrong.join("; ")
        )))
    }
}

fn host(c: &ContainerInspectResponse) -> Option<&bollard::models::HostConfig> {
    c.host_config.as_ref()
}

/// The engine made the container without any network (a node run with
/// `bridge: none`): only `lo`, although inspect may still list `bridge`.
fn network_disabled(c: &ContainerInspectResponse) -> bool {
    c.config
        .as_ref()
        .and_then(|c| c.network_disabled)
        .unwrap_or(false)
}

fn networks(c: &ContainerInspectResponse) -> Vec<String> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every way `c` differs from `expected`, in words.
pub(super) fn mismatches(c: &ContainerInspectResponse, expected: &Expected) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            wrong.push(what);
        }
    };
    let h = host(c).cloned().unwrap_or_default();
    let user = c.config.as_ref().and_then(|c| c.user.clone());
    if expected.no_network {
        let nets = networks(c);
        check(
            network_disabled(c) || nets.is_empty(),
            format!("connected to {}", nets.join(", ")),
        );
    }
    check(
        h.network_mode.as_deref() != Some("host"),
        "on the host's network".into(),
    );
    check(
        h.readonly_rootfs.unwrap_or(false) == expected.read_only_root,
        format!("read-only root {:?}", h.readonly_rootfs),
    );
    let drops_all = h
        .cap_drop
        .as_ref()
        .is_some_and(|d| d.iter().any(|c| c.eq_ignore_ascii_case("ALL")));
    check(drops_all, format!("capabilities dropped {:?}", h.cap_drop));
    check(
        h.cap_add.as_ref().is_none_or(|a| a.is_empty()),
        format!("capabilities added {:?}", h.cap_add),
    );
    check(!h.privileged.unwrap_or(false), "privileged".into());
    check(
        user.as_deref() == Some(expected.user.as_str()),
        format!("user {user:?}"),
    );
    check(
        h.memory == Some(expected.memory) && h.memory_swap == Some(expected.memory),
        format!("memory {:?}, with swap {:?}", h.memory, h.memory_swap),
    );
    check(
        h.nano_cpus == Some(expected.nano_cpus),
        format!("CPUs {:?} (nano)", h.nano_cpus),
    );
    check(
        h.pids_limit == Some(expected.pids),
        format!("pids {:?}", h.pids_limit),
    );
    let nofile = h.ulimits.as_ref().and_then(|u| {
        u.iter()
            .find(|u| u.name.as_deref() == Some("nofile"))
            .map(|u| (u.soft, u.hard))
    });
    check(
        nofile == Some((Some(expected.nofile), Some(expected.nofile))),
        format!("open files {nofile:?}"),
    );
    for (target, bytes) in [
        ("/tmp", expected.tmp_bytes),
        ("/dev/shm", expected.shm_bytes),
    ] {
        let size = h.mounts.as_ref().and_then(|ms| {
            ms.iter()
                .find(|m| m.target.as_deref() == Some(target))
                .filter(|m| m.typ == Some(bollard::models::MountType::TMPFS))
                .map(|m| m.tmpfs_options.as_ref().and_then(|t| t.size_bytes))
        });
        check(
            size == Some(Some(bytes)),
            format!("{target} tmpfs of {size:?} bytes"),
        );
    }
    wrong
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerConfig, EndpointSettings, HostConfig, Mount, MountTmpfsOptions, MountType,
        NetworkSettings, ResourcesUlimits,
    };
    use std::collections::HashMap;

    fn expected() -> Expected {
        Expected {
            no_network: true,
            read_only_root: true,
            user: "65534:65534".into(),
            memory: 64 << 20,
            nano_cpus: 100_000_000,
            pids: 64,
            nofile: 1024,
            tmp_bytes: 16 << 20,
            shm_bytes: 8 << 20,
        }
    }

    fn tmpfs(target: &str, bytes: i64) -> Mount {
        Mount {
            target: Some(target.into()),
            typ: Some(MountType::TMPFS),
            tmpfs_options: Some(MountTmpfsOptions {
                size_bytes: Some(bytes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A container as a node makes it from the service spec, fixed up.
    fn sound() -> ContainerInspectResponse {
        let e = expected();
        ContainerInspectResponse {
            config: Some(ContainerConfig {
                user: Some(e.user.clone()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("default".into()),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                memory: Some(e.memory),
                memory_swap: Some(e.memory),
                nano_cpus: Some(e.nano_cpus),
                pids_limit: Some(e.pids),
                ulimits: Some(vec![ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(1024),
                    hard: Some(1024),
                }]),
                mounts: Some(vec![
                    tmpfs("/tmp", e.tmp_bytes),
                    tmpfs("/dev/shm", e.shm_bytes),
                ]),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_sound_container_passes() {
        assert_eq!(mismatches(&sound(), &expected()), Vec::<String>::new());
    }

    #[test]
    fn every_property_is_checked() {
        type Break = fn(&mut ContainerInspectResponse);
        let cases: Vec<(&str, Break)> = vec![
            ("connected to bridge", |c| {
                let n = c.network_settings.get_or_insert_with(Default::default);
                n.networks = Some(HashMap::from([(
                    "bridge".to_string(),
                    EndpointSettings::default(),
                )]));
            }),
            ("host's network", |c| {
                c.host_config
                    .get_or_insert_with(Default::default)
                    .network_mode = Some("host".into())
            }),
            ("read-only root", |c| {
                c.host_config
                    .get_or_insert_with(Default::default)
                    .readonly_rootfs = Some(false)
            }),
            ("capabilities dropped", |c| {
                c.host_config.get_or_insert_with(Default::default).cap_drop = None
            }),
            ("capabilities added", |c| {
                c.host_config.get_or_insert_with(Default::default).cap_add =
                    Some(vec!["NET_RAW".into()])
            }),
            ("user", |c| {
                c.config.get_or_insert_with(Default::default).user = Some("0".into())
            }),
            ("swap", |c| {
                c.host_config
                    .get_or_insert_with(Default::default)
                    .memory_swap = Some(128 << 20)
            }),
            ("CPUs", |c| {
                c.host_config.get_or_insert_with(Default::default).nano_cpus = None
            }),
            ("pids", |c| {
                c.host_config
                    .get_or_insert_with(Default::default)
                    .pids_limit = Some(0)
            }),
            ("open files", |c| {
                c.host_config.get_or_insert_with(Default::default).ulimits = None
            }),
            ("/dev/shm", |c| {
                let h = c.host_config.get_or_insert_with(Default::default);
                h.mounts = Some(vec![tmpfs("/tmp", 16 << 20)]);
            }),
        ];
        for (what, breaks) in cases {
            let mut c = sound();
            breaks(&mut c);
            let wrong = mismatches(&c, &expected());
            assert_eq!(wrong.len(), 1, "{what}: {wrong:?}");
            assert!(wrong[0].contains(what), "{what}: {wrong:?}");
        }
        // A node without a bridge: inspect still lists one, but the engine
        // made no interface.
        let mut c = sound();
        c.config
            .get_or_insert_with(Default::default)
            .network_disabled = Some(true);
        let n = c.network_settings.get_or_insert_with(Default::default);
        n.networks = Some(HashMap::from([(
            "bridge".to_string(),
            EndpointSettings::default(),
        )]));
        assert!(mismatches(&c, &expected()).is_empty());
    }
}
