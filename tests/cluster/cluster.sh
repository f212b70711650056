#!/usr/bin/env bash
# A Docker Swarm of N engines on this one machine, for Bento's cluster tests.
#
#   tests/cluster/cluster.sh up N          make N engines, form a Swarm, load images
#   tests/cluster/cluster.sh down          remove everything this cluster made
#   tests/cluster/cluster.sh status        each node: process, engine API, Swarm state
#   tests/cluster/cluster.sh env           the KEY=VALUE summary that `up` printed
#   tests/cluster/cluster.sh kill-node I [--engine-only] [--wait]
#                                          SIGKILL node I: its dockerd, containerd,
#                                          shims and containers (--engine-only:
#                                          dockerd alone, containers live on;
#                                          --wait: until the manager says Down)
#   tests/cluster/cluster.sh start-node I  start node I again on the same data root
#   tests/cluster/cluster.sh isolate-node I / heal-node I
#                                          cut / restore node I's link: packets to and
#                                          from it are dropped, calls time out
#   tests/cluster/cluster.sh load IMAGE... save images from the main engine and
#                                          load them on every running node
#
# Each node is a dockerd in a network namespace of its own (`nsenter --net`,
# never `ip netns exec`, which remounts /sys and hides the cgroup filesystem
# from dockerd), with its own address, data root, exec root, socket, pidfile,
# daemon config file and cgroup parent. The nodes hang off a bridge in a hub
# namespace; one veth pair joins the hub to the host namespace, so a process
# on the host (the controller under test) reaches every node's engine API
# over plain TCP. The machine's own Docker engine is only read from
# (`docker save`), never configured.
#
# Environment:
#   CLUSTER_NAME      cluster name, [a-z0-9]{1,8} (default bento); every name
#                     below derives from it, so two clusters never collide
#   CLUSTER_SUBNET    first three octets of the cluster's /24 (default
#                     10.213.X, X from a checksum of the name); the host side
#                     is .1, node I is .(10+I)
#   CLUSTER_IMAGES    images loaded on every node (default bento/base:bookworm)
#   CLUSTER_BRIDGE    1: nodes keep Docker's default bridge network (default 0:
#                     --bridge=none, as a hardened worker would run)
#   CLUSTER_DAEMON_JSON  extra daemon.json keys for every node, a JSON object
#                     (e.g. '{"no-new-privileges": true}')
#   CLUSTER_REGISTRY_PORT  nodes trust a plain-HTTP registry on the host side's
#                     address at this port (insecure-registries); the env
#                     then has CLUSTER_REGISTRY=ADDR:PORT. The caller runs it.
#   CLUSTER_TLS       1: every engine's TCP listener is TLS with client
#                     verification, on port 2376 (default 0: plain TCP on
#                     2375); the env then has CLUSTER_CERT_PATH, a client's
#                     files in Docker's layout (ca.pem, cert.pem, key.pem).
#                     Each node's certificate names its address (an IP SAN).
#   CLUSTER_STORAGE_DRIVER  nodes' storage driver (default overlay2)
#   CLUSTER_HEARTBEAT Swarm dispatcher heartbeat, e.g. 1s (default: Swarm's
#                     5s, a killed node is Down after about 14 s)
#   CLUSTER_DATA      where data roots go (default /var/lib/bento-cluster)
#   CLUSTER_TMPFS     1: the data roots live on a tmpfs mounted there, of at most
#                     CLUSTER_TMPFS_SIZE (default 4g; only what is used counts);
#                     0: on disk (default 1)
#   CLUSTER_KEEP      1: a failed `up` leaves what it made, to look at (default:
#                     it tears down)
#
# `up` prints KEY=VALUE lines on stdout (also kept in the cluster's env file,
# see `env`); progress and timings go to stderr. Needs root, iproute2,
# util-linux (nsenter), dockerd and the docker CLI, jq and curl.
set -euo pipefail

NAME=${CLUSTER_NAME:-bento}
if ! [[ $NAME =~ ^[a-z0-9]{1,8}$ ]]; then
  echo "cluster: CLUSTER_NAME must be 1-8 characters of [a-z0-9]" >&2
  exit 2
fi
if [ -n "${CLUSTER_SUBNET:-}" ]; then
  PREFIX=$CLUSTER_SUBNET
else
  sum=$(printf '%s' "$NAME" | cksum | cut -d' ' -f1)
  PREFIX=10.213.$((sum % 250 + 1))
fi
if ! [[ $PREFIX =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]]; then
  echo "cluster: CLUSTER_SUBNET must be three octets, e.g. 10.213.7" >&2
  exit 2
fi
RUN=/run/bento-cluster/$NAME          # sockets, pidfiles, exec roots, config, logs
DATA=${CLUSTER_DATA:-/var/lib/bento-cluster}/$NAME
NS=bcl-$NAME                          # netns: $NS-hub, $NS-1 ... $NS-N
HOSTIF=bcl-$NAME                      # the host end of the host <-> hub veth
CGROUP=bento-cluster-$NAME            # node I's cgroup parent: /$CGROUP-I
TLS=$RUN/tls                          # CA, node and client files (CLUSTER_TLS=1)
tls_on() { [ -f "$TLS/ca.pem" ]; }
PORT=2375
if [ "${CLUSTER_TLS:-0}" = 1 ] || tls_on; then PORT=2376; fi

log() { echo "cluster[$NAME]: $*" >&2; }
die() { log "error: $*"; exit 1; }
now_us() { local t=${EPOCHREALTIME/./}; echo "$((10#$t))"; }
# seconds since a now_us mark (or between two marks), e.g. 1.42
since() { local d=$((${2:-$(now_us)} - $1)); printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000)); }

addr() { echo "$PREFIX.$((10 + $1))"; }
# node I's engine API answers from the host (over TLS where it is on)
api_up() {
  local i=$1 t=$2
  if tls_on; then
    curl -sf --max-time "$t" --cacert "$TLS/client/ca.pem" --cert "$TLS/client/cert.pem" \
      --key "$TLS/client/key.pem" "https://$(addr "$i"):$PORT/_ping" >/dev/null 2>&1
  else
    curl -sf --max-time "$t" "http://$(addr "$i"):$PORT/_ping" >/dev/null 2>&1
  fi
}
sock() { echo "$RUN/$1/docker.sock"; }
D() { local i=$1; shift; docker -H "unix://$(sock "$i")" "$@"; }
# a call that never hangs on a dead or cut-off node
Dt() { local i=$1; shift; timeout 5 docker -H "unix://$(sock "$i")" "$@"; }
pid_of() { cat "$RUN/$1/docker.pid" 2>/dev/null || true; }
# node I's dockerd runs (a zombie does not count: whoever reaps it may be slow)
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && [ -n "$(echo "$p" | living)" ]; }
# node numbers that have a run directory (also after a partial `up`)
nodes() {
  local d
  for d in "$RUN"/[0-9]*; do [ -d "$d" ] && basename "$d"; done | sort -n
}
node_arg() {
  if ! [[ ${1:-} =~ ^[0-9]+$ ]] || ! [ -d "$RUN/$1" ]; then
    die "no node '${1:-}' in cluster $NAME"
  fi
}

# The daemon config file of node I: everything but the listeners. A config
# file of its own, since /etc/docker/daemon.json (the main engine's) sets a
# data root of its own.
write_config() {
  local i=$1 bridge='"none"'
  [ "${CLUSTER_BRIDGE:-0}" = 1 ] && bridge='""'
  local registries='[]'
  [ -n "${CLUSTER_REGISTRY_PORT:-}" ] && registries="[\"$PREFIX.1:$CLUSTER_REGISTRY_PORT\"]"
  jq -n --arg data "$DATA/$i" --arg exec "$RUN/$i/exec" --arg pid "$RUN/$i/docker.pid" \
    --arg cg "/$CGROUP-$i" --arg sd "${CLUSTER_STORAGE_DRIVER:-overlay2}" \
    --argjson bridge "$bridge" --argjson registries "$registries" --argjson extra "${CLUSTER_DAEMON_JSON:-{\}}" '{
      "data-root": $data, "exec-root": $exec, "pidfile": $pid,
      "cgroup-parent": $cg, "storage-driver": $sd,
      "iptables": false, "ip-masq": false, "userland-proxy": false,
      "log-driver": "json-file", "log-opts": {"max-size": "1m", "max-file": "1"}
    } + (if $bridge == "none" then {"bridge": "none"} else {} end)
      + (if $registries == [] then {} else {"insecure-registries": $registries} end) + $extra' \
    > "$RUN/$i/daemon.json"
}

# A CA, a server certificate for each of nodes 1..N naming its address, and
# a client certificate, all in $TLS (openssl; a few hundred ms).
make_tls() {
  local n=$1 i d
  command -v openssl >/dev/null || die "CLUSTER_TLS=1 needs openssl"
  mkdir -p "$TLS/client"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bento-cluster-$NAME-ca" \
    -keyout "$TLS/ca-key.pem" -out "$TLS/ca.pem" 2>/dev/null
  cert() {   # cert DIR CN EXTENSIONS
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1/key.pem" \
      -out "$1/req.pem" 2>/dev/null
    printf '%s\n' "$3" > "$1/ext.cnf"
    openssl x509 -req -in "$1/req.pem" -CA "$TLS/ca.pem" -CAkey "$TLS/ca-key.pem" \
      -CAcreateserial -days 2 -extfile "$1/ext.cnf" -out "$1/cert.pem" 2>/dev/null
    rm -f "$1/req.pem" "$1/ext.cnf"
  }
  for i in $(seq 1 "$n"); do
    d=$TLS/node-$i; mkdir -p "$d"
    cert "$d" "$NS-$i" "subjectAltName=IP:$(addr "$i")
extendedKeyUsage=serverAuth"
  done
  cert "$TLS/client" "bento-controller" "extendedKeyUsage=clientAuth"
  cp "$TLS/ca.pem" "$TLS/client/ca.pem"
}

start_engine() {
  local i=$1
  mkdir -p "$RUN/$i/exec" "$DATA/$i"
  rm -f "$(sock "$i")"
  # dockerd refuses a pidfile whose process exists, and a killed dockerd can
  # stay a zombie for a while (until whoever inherited it reaps it)
  alive "$i" || rm -f "$RUN/$i/docker.pid"
  # the same for the containerd it starts, which a dead dockerd takes along
  local cpid=$RUN/$i/exec/containerd/containerd.pid
  if [ -s "$cpid" ] && [ -z "$(living < "$cpid")" ]; then rm -f "$cpid"; fi
  # --tls=false on the command line: dockerd 20.10 sleeps 15 s at start when
  # a TCP listener has no TLS and the flag was not given explicitly.
  local tls_flags=(--tls=false)
  if tls_on; then
    tls_flags=(--tlsverify --tlscacert "$TLS/ca.pem" --tlscert "$TLS/node-$i/cert.pem"
      --tlskey "$TLS/node-$i/key.pem")
  fi
  # A UTS namespace of its own too, so each node has its own hostname
  # (`docker node ls`, node.hostname constraints).
  # shellcheck disable=SC2016
  setsid unshare --uts -- nsenter --net="/run/netns/$NS-$i" -- \
    sh -c 'hostname "$0" && exec "$@"' "$NS-$i" \
    dockerd --config-file "$RUN/$i/daemon.json" \
    -H "unix://$(sock "$i")" -H "tcp://$(addr "$i"):$PORT" "${tls_flags[@]}" \
    >> "$RUN/$i/dockerd.log" 2>&1 < /dev/null &
  STARTED=$!
  disown "$STARTED"   # not this script's job: no "Killed" notice when it goes
}

wait_engine() {
  local i=$1
  for _ in $(seq 1 300); do
    Dt "$i" version >/dev/null 2>&1 && return 0
    [ -n "$(echo "$STARTED" | living)" ] || break
    sleep 0.1
  done
  tail -n 20 "$RUN/$i/dockerd.log" >&2 || true
  [ -n "$(echo "$STARTED" | living)" ] || die "node $i: dockerd exited (log: $RUN/$i/dockerd.log)"
  die "node $i: engine did not answer within 30 s (log: $RUN/$i/dockerd.log)"
}

# pids of every process in the netns $1 (dockerd, containerd, shims, ...)
pids_in_netns() {
  [ -e "/run/netns/$1" ] && ip netns pids "$1" 2>/dev/null
  return 0
}

# pids of the containers of node I (by the node's cgroup parent)
pids_in_cgroup() {
  cat /sys/fs/cgroup/pids/"$CGROUP-$1"/*/cgroup.procs \
      /sys/fs/cgroup/pids/"$CGROUP-$1"/cgroup.procs 2>/dev/null || true
}

# the pids read on stdin that are still alive (not zombies)
living() {
  local p
  while read -r p; do
    if [ -e "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then echo "$p"; fi
  done
}

kill_pids() { local p; for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done; }

# SIGKILL all of node I: containers, then everything in its netns (dockerd,
# containerd, shims, fuse helpers); wait until they are gone.
kill_all() {
  local i=$1 left
  for _ in $(seq 1 50); do
    # shellcheck disable=SC2046
    kill_pids $(pids_in_cgroup "$i") $(pids_in_netns "$NS-$i")
    left=$( { pids_in_cgroup "$i"; pids_in_netns "$NS-$i"; } | living)
    [ -z "$left" ] && break
    sleep 0.1
  done
  [ -z "$left" ] || log "node $i: processes still alive after SIGKILL: $left"
  rm_shim_sockets "$i"
}

# A shim's socket is /run/containerd/s/<sha256 of "<containerd address>/moby/<id>">,
# outside the node's exec root; a SIGKILLed shim leaves it behind. Remove the
# sockets of node I's containers (and no one else's).
rm_shim_sockets() {
  local i=$1 c h
  for c in "$DATA/$i"/containers/*/; do
    [ -d "$c" ] || continue
    h=$(printf '%s' "$RUN/$i/exec/containerd/containerd.sock/moby/$(basename "$c")" | sha256sum | cut -d' ' -f1)
    rm -f "/run/containerd/s/$h"
  done
}

umount_under() {
  local dir=$1
  [ -n "$dir" ] || return 0
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

rm_cgroups() {
  local c
  for c in /sys/fs/cgroup/*/"$CGROUP"-[0-9]*; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  return 0
}

cmd_down() {
  local t0 t1 t2 t3 i ns
  t0=$(now_us)
  for i in $(nodes); do kill_all "$i"; done
  # a netns whose run dir is already gone (a partial down) still gets emptied
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$NS-[0-9]+$" || true); do
    # shellcheck disable=SC2046
    kill_pids $(pids_in_netns "$ns")
  done
  t1=$(now_us)
  umount_under "$RUN"
  umount_under "$DATA"
  t2=$(now_us)
  rm -rf "$RUN" "$DATA"
  # parents, only if empty (/run/containerd/s: other engines' shims may use it)
  rmdir "$(dirname "$DATA")" /run/bento-cluster /run/containerd/s /run/containerd 2>/dev/null || true
  t3=$(now_us)
  rm_cgroups
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$NS-([0-9]+|hub)$" || true); do
    ip netns del "$ns"
  done
  ip link del "$HOSTIF" 2>/dev/null || true
  log "down in $(since "$t0") s (processes $(since "$t0" "$t1") s, unmounts $(since "$t1" "$t2") s," \
    "data $(since "$t2" "$t3") s, namespaces $(since "$t3") s)"
}

make_network() {
  local n=$1 i
  # refuse a subnet someone else uses (our own was removed by `down`)
  if ip -4 -o addr show | grep -qF " inet $PREFIX." || ip -4 route show | grep -qF "$PREFIX."; then
    die "subnet $PREFIX.0/24 is in use on this host; set CLUSTER_SUBNET or CLUSTER_NAME"
  fi
  ip netns add "$NS-hub"
  ip -n "$NS-hub" link set lo up
  ip -n "$NS-hub" link add br0 type bridge
  ip -n "$NS-hub" link set br0 up
  ip link add "$HOSTIF" type veth peer name host netns "$NS-hub"
  ip -n "$NS-hub" link set host master br0 up
  ip addr add "$PREFIX.1/24" dev "$HOSTIF"
  ip link set "$HOSTIF" up
  for i in $(seq 1 "$n"); do
    ip netns add "$NS-$i"
    ip -n "$NS-hub" link add "n$i" type veth peer name eth0 netns "$NS-$i"
    ip -n "$NS-hub" link set "n$i" master br0 up
    ip -n "$NS-$i" addr add "$(addr "$i")/24" dev eth0
    ip -n "$NS-$i" link set eth0 up
    ip -n "$NS-$i" link set lo up
  done
}

check_images() {
  local img
  for img in "$@"; do
    docker image inspect "$img" >/dev/null 2>&1 ||
      die "image $img is not on the main engine (bento/base:bookworm: images/base/bootstrap.sh)"
  done
}

save_images() {   # save images from the main engine into $RUN/images.tar
  docker save -o "$RUN/images.tar" "$@"
}

load_images() {   # load $RUN/images.tar on nodes "$@"
  local i t
  for i in "$@"; do
    t=$(now_us)
    D "$i" load -q -i "$RUN/images.tar" >/dev/null
    log "node $i: images loaded in $(since "$t") s"
  done
  rm -f "$RUN/images.tar"
}

write_env() {
  local n=$1 i id role
  {
    echo "CLUSTER_NAME=$NAME"
    echo "CLUSTER_NODES=$n"
    echo "CLUSTER_SUBNET=$PREFIX.0/24"
    echo "CLUSTER_HOST_IF=$HOSTIF"
    echo "CLUSTER_HOST_ADDR=$PREFIX.1"
    [ -n "${CLUSTER_REGISTRY_PORT:-}" ] && echo "CLUSTER_REGISTRY=$PREFIX.1:$CLUSTER_REGISTRY_PORT"
    echo "CLUSTER_MANAGER=tcp://$(addr 1):$PORT"
    echo "CLUSTER_NODE_PORT=$PORT"
    if tls_on; then echo "CLUSTER_CERT_PATH=$TLS/client"; fi
    echo "CLUSTER_MANAGER_SOCKET=unix://$(sock 1)"
    echo "CLUSTER_SWARM_ID=$(D 1 info --format '{{.Swarm.Cluster.ID}}')"
    echo "CLUSTER_IMAGES=$IMAGES"
    for i in $(seq 1 "$n"); do
      id=$(D "$i" info --format '{{.Swarm.NodeID}}')
      role=worker; [ "$i" = 1 ] && role=manager
      echo "NODE${i}_ID=$id"
      echo "NODE${i}_ROLE=$role"
      echo "NODE${i}_ADDR=$(addr "$i")"
      echo "NODE${i}_ENDPOINT=tcp://$(addr "$i"):$PORT"
      echo "NODE${i}_SOCKET=unix://$(sock "$i")"
      echo "NODE${i}_NETNS=$NS-$i"
      echo "NODE${i}_DATA_ROOT=$DATA/$i"
    done
  } > "$RUN/cluster.env"
}

up_exit() {
  [ "$1" = 0 ] && return 0
  if [ "${CLUSTER_KEEP:-0}" = 1 ]; then
    log "up failed; kept as it is (CLUSTER_KEEP=1): run \`$0 down\` when done"
  else
    log "up failed; tearing down"
    cmd_down
  fi
}

cmd_up() {
  local n=${1:-3} i t0 t token ready
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then
    die "usage: up N (1..200)"
  fi
  IMAGES=${CLUSTER_IMAGES:-bento/base:bookworm}
  # shellcheck disable=SC2086
  check_images $IMAGES
  cmd_down 2>/dev/null
  # (a TLS cluster of this name that was there decides nothing now)
  PORT=2375
  if [ "${CLUSTER_TLS:-0}" = 1 ]; then PORT=2376; fi
  t0=$(now_us)
  # a failed or interrupted `up` leaves nothing behind (CLUSTER_KEEP=1 keeps
  # it to look at)
  trap 'up_exit $?' EXIT
  trap 'exit 143' TERM INT HUP
  mkdir -p "$RUN" "$DATA"
  # Data roots in memory by default: nothing to write back, and `down` frees
  # them at once (removing a data root from this disk took up to 40 s).
  if [ "${CLUSTER_TMPFS:-1}" = 1 ]; then
    mount -t tmpfs -o "size=${CLUSTER_TMPFS_SIZE:-4g},mode=0711" "bento-cluster-$NAME" "$DATA"
  fi
  t=$(now_us); make_network "$n"; log "network ($n nodes) in $(since "$t") s"
  if [ "${CLUSTER_TLS:-0}" = 1 ]; then
    t=$(now_us); make_tls "$n"; log "TLS files in $(since "$t") s"
  fi
  # the images leave the main engine while the nodes start
  # shellcheck disable=SC2086
  save_images $IMAGES &
  local saver=$!
  for i in $(seq 1 "$n"); do
    mkdir -p "$RUN/$i"
    write_config "$i"
    t=$(now_us); start_engine "$i"; wait_engine "$i"
    log "node $i: engine up in $(since "$t") s"
  done
  t=$(now_us); wait "$saver" || die "docker save failed"; log "images saved in $(since "$t") s more"
  load_images $(seq 1 "$n")

  t=$(now_us)
  D 1 swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" \
    --default-addr-pool 10.214.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
  [ -n "${CLUSTER_HEARTBEAT:-}" ] && D 1 swarm update --dispatcher-heartbeat "$CLUSTER_HEARTBEAT" >/dev/null
  token=$(D 1 swarm join-token -q worker)
  for i in $(seq 2 "$n"); do
    D "$i" swarm join --advertise-addr "$(addr "$i")" --listen-addr "$(addr "$i"):2377" \
      --token "$token" "$(addr 1):2377" >/dev/null
  done
  for i in $(seq 1 100); do
    ready=$(D 1 node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
    [ "$ready" = "$n" ] && break
    sleep 0.1
  done
  [ "$ready" = "$n" ] || die "only $ready of $n nodes Ready"
  for i in $(seq 1 "$n"); do
    D 1 node update --label-add "bento.cluster.node=$i" "$(D "$i" info --format '{{.Swarm.NodeID}}')" >/dev/null
  done
  log "swarm of $n nodes ready in $(since "$t") s"

  # the controller's path: host netns -> hub -> each node's TCP listener
  for i in $(seq 1 "$n"); do
    api_up "$i" 3 || die "node $i: engine API not reachable from the host at $(addr "$i"):$PORT"
  done
  write_env "$n"
  trap - EXIT TERM INT HUP
  log "up in $(since "$t0") s"
  cat "$RUN/cluster.env"
}

cmd_status() {
  local i state mgr
  [ -d "$RUN" ] || { log "not up"; return 1; }
  mgr=$(Dt 1 node ls --format '{{.Hostname}} {{.ID}} {{.Status}} {{.Availability}} {{.ManagerStatus}}' 2>/dev/null || true)
  printf '%-5s %-16s %-8s %-8s %s\n' NODE ADDR DOCKERD API SWARM
  for i in $(nodes); do
    state=$(alive "$i" && echo "pid$(pid_of "$i")" || echo dead)
    local api=down id swarm=-
    api_up "$i" 2 && api=up
    id=$(grep "^NODE${i}_ID=" "$RUN/cluster.env" 2>/dev/null | cut -d= -f2 || true)
    [ -n "$id" ] && swarm=$(echo "$mgr" | awk -v id="$id" '$2 == id { $1 = ""; $2 = ""; print }' | xargs)
    [ -z "$mgr" ] && swarm="(manager unreachable)"
    printf '%-5s %-16s %-8s %-8s %s\n' "$i" "$(addr "$i")" "$state" "$api" "${swarm:--}"
  done
}

cmd_kill_node() {
  local i=$1 p t id engine_only=0 wait=0 arg
  node_arg "$i"
  shift
  for arg in "$@"; do
    case $arg in
      --engine-only) engine_only=1 ;;
      --wait) wait=1 ;;
      *) die "kill-node: unknown option $arg" ;;
    esac
  done
  t=$(now_us)
  if [ "$engine_only" = 1 ]; then
    p=$(pid_of "$i")
    if [ -n "$p" ]; then kill -9 "$p" 2>/dev/null || true; fi
    log "node $i: dockerd ($p) SIGKILLed; its containers live on"
  else
    kill_all "$i"
    log "node $i: dockerd, containerd, shims and containers SIGKILLed"
  fi
  if [ "$wait" = 1 ]; then
    [ "$i" != 1 ] || die "kill-node --wait: node 1 is the manager; nobody is left to say it is down"
    id=$(grep "^NODE${i}_ID=" "$RUN/cluster.env" | cut -d= -f2)
    until [ "$(Dt 1 node inspect --format '{{.Status.State}}' "$id" 2>/dev/null)" = down ]; do
      sleep 0.2
    done
    log "node $i: Down in the swarm $(since "$t") s after the kill"
  fi
}

cmd_start_node() {
  local i=$1 t id
  node_arg "$i"
  if alive "$i"; then log "node $i: already running"; return 0; fi
  ip -n "$NS-hub" link set "n$i" up
  t=$(now_us); start_engine "$i"; wait_engine "$i"
  log "node $i: engine up in $(since "$t") s"
  id=$(grep "^NODE${i}_ID=" "$RUN/cluster.env" 2>/dev/null | cut -d= -f2 || true)
  if [ -n "$id" ] && [ "$i" != 1 ]; then
    for _ in $(seq 1 300); do
      [ "$(Dt 1 node inspect --format '{{.Status.State}}' "$id" 2>/dev/null)" = ready ] && break
      sleep 0.1
    done
    log "node $i: Ready in the swarm $(since "$t") s after start"
  fi
}

cmd_link() {
  local i=$1 state=$2
  node_arg "$i"
  ip -n "$NS-hub" link set "n$i" "$state"
  log "node $i: link $state"
}

cmd_load() {
  [ $# -ge 1 ] || die "usage: load IMAGE..."
  local live=() i
  for i in $(nodes); do alive "$i" && live+=("$i"); done
  check_images "$@"
  save_images "$@"
  load_images "${live[@]}"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cat "$RUN/cluster.env" ;;
  kill-node) shift; cmd_kill_node "$@" ;;
  start-node) shift; cmd_start_node "$@" ;;
  isolate-node) cmd_link "${2:-}" down ;;
  heal-node) cmd_link "${2:-}" up ;;
  load) shift; cmd_load "$@" ;;
  *) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
