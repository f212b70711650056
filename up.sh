#!/usr/bin/env bash
# Runs Bento: brings up the compose stack (docker-compose.yml) and waits
# until the controller answers /healthz. Works with compose v2 (`docker
# compose`) or v1 (`docker-compose`), with or without a container registry.
#
#   ./up.sh
#
# Online (the base images are here or can be pulled): `compose up -d --build`,
# the controller compiled in a container. Offline (nothing can be pulled):
# bootstraps bento/base:bookworm from Debian packages (images/base/bootstrap.sh,
# needs root), builds the controller on the host (cargo build --release) and
# copies it into that base (images/controller/Dockerfile.prebuilt). See
# docs/compose.md. Run it again after changing the code: it rebuilds what
# changed and recreates the controller.
#
# Environment, all optional (docker-compose.yml's settings apply as well:
# BENTO_PORT, BENTO_CONFIG_DIR, BENTO_API_KEY, ..., and COMPOSE_PROJECT_NAME):
#   BENTO_OFFLINE=1 or 0   take the offline or the online route (default: find out)
#   BENTO_PULL_TIMEOUT     seconds the registry may take to answer (default 30)
#   BENTO_UP_TIMEOUT       seconds to wait for /healthz (default 300)
set -euo pipefail
cd "$(dirname "$0")"

step=""
say() {
  step="$*"
  printf '\n==> %s\n' "$*"
}
die() {
  step=""
  printf '\nup.sh: %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '       %s\n' "$line" >&2; done
  exit 1
}
# Whatever fails without a message of its own still says where it was.
trap 'rc=$?; [ "$rc" = 0 ] || [ -z "$step" ] || printf "\nup.sh: failed (exit %s) at: %s\n" "$rc" "$step" >&2' EXIT

port="${BENTO_PORT:-7470}"
url="http://127.0.0.1:$port"
offline_base="${BENTO_BASE_TAG:-bento/base:bookworm}"

say "Docker engine"
command -v docker >/dev/null 2>&1 ||
  die "the docker command is missing" "install Docker Engine: https://docs.docker.com/engine/install/"
engine=$(timeout 20 docker version --format '{{.Server.Version}}' 2>&1) ||
  die "cannot reach the Docker engine: $engine" \
    "is it running (systemctl status docker)? May you use it (root, or the docker group)?"
echo "engine $engine"

say "Docker Compose"
# v2 first: `docker compose version` succeeds only where the plugin is
# installed (without it the docker CLI says "unknown command").
if docker compose version >/dev/null 2>&1; then
  dc=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  dc=(docker-compose)
else
  die "no Docker Compose: neither \`docker compose\` (v2) nor \`docker-compose\` (v1) works" \
    "install one: the docker-compose-plugin package (v2), or docker-compose 1.29 (apt-get install docker-compose)"
fi
compose() { "${dc[@]}" "$@"; }
echo "${dc[*]} $(compose version --short 2>/dev/null || echo '(version unknown)')"

say "Port $port"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && [ -z "$(compose ps -q controller 2>/dev/null)" ]; then
  holder=$(docker ps --filter "publish=$port" --format '{{.Names}}' | head -n 1)
  die "port $port is taken${holder:+ (by container $holder)}, and not by this stack" \
    "choose another:  BENTO_PORT=7471 ./up.sh   (then: export BENTO_URL=http://127.0.0.1:7471)"
fi
echo "free (or already this stack's)"

# Online needs these three; BENTO_* choose others, as in docker-compose.yml.
build_image="${BENTO_BUILD_IMAGE:-rust:1}"
runtime_image="${BENTO_RUNTIME_IMAGE:-debian:bookworm-slim}"
base_image="${BENTO_BASE_IMAGE:-python:3.12-slim}"

say "Container registry"
offline="${BENTO_OFFLINE:-}"
case "$offline" in
  "" | 0 | 1) ;;
  *) die "BENTO_OFFLINE is \"$offline\": 1 (offline route), 0 (online) or unset (find out)" ;;
esac
if [ -n "$offline" ]; then
  echo "BENTO_OFFLINE=$offline: not asking the registry"
else
  missing=()
  for image in "$base_image" "$runtime_image" "$build_image"; do
    docker image inspect "$image" >/dev/null 2>&1 || missing+=("$image")
  done
  if [ "${#missing[@]}" = 0 ]; then
    echo "$base_image, $runtime_image and $build_image are here: nothing to pull"
    offline=0
  else
    # Pull the first missing one (the smallest, python, if it is missing),
    # for at most BENTO_PULL_TIMEOUT seconds: either it arrives, or the
    # registry answered and the download is under way (compose will finish
    # it), or there is no registry.
    probe="${missing[0]}"
    wait_s="${BENTO_PULL_TIMEOUT:-30}"
    echo "missing: ${missing[*]}; pulling $probe (at most ${wait_s}s)"
    log=$(mktemp)
    rc=0
    timeout "$wait_s" docker pull "$probe" >"$log" 2>&1 || rc=$?
    if [ "$rc" = 0 ] || grep -qE 'Pulling from|Pulling fs layer|Downloading|Pull complete|Digest:' "$log"; then
      echo "the registry answers: online route"
      offline=0
    else
      if [ "$rc" = 124 ]; then
        reason="no answer in ${wait_s}s"
      else
        reason=$(tail -n 1 "$log")
      fi
      echo "cannot pull $probe: $reason"
      echo "no registry: offline route (docs/compose.md, \"Offline\"; BENTO_OFFLINE=1 skips this question)"
      offline=1
    fi
    rm -f "$log"
  fi
fi

if [ "$offline" = 1 ]; then
  say "Base image $offline_base (offline)"
  if docker image inspect "$offline_base" >/dev/null 2>&1; then
    echo "$offline_base is here"
  else
    echo "building it from Debian packages: images/base/bootstrap.sh (debootstrap, about a minute, needs root)"
    if [ "$(id -u)" = 0 ]; then
      images/base/bootstrap.sh ||
        die "images/base/bootstrap.sh failed (its output is above)" \
          "a Debian mirror must be reachable (BENTO_DEBIAN_MIRROR chooses one); then ./up.sh again"
    elif command -v sudo >/dev/null 2>&1 && { [ -t 0 ] || sudo -n true 2>/dev/null; }; then
      echo "not root: running it with sudo"
      sudo --preserve-env=BENTO_BASE_TAG,BENTO_DEBIAN_MIRROR,BENTO_SUITE,DOCKER_HOST \
        images/base/bootstrap.sh ||
        die "sudo images/base/bootstrap.sh failed (its output is above)" \
          "it needs root (debootstrap) and a reachable Debian mirror (BENTO_DEBIAN_MIRROR); then ./up.sh again"
    else
      die "building the base image $offline_base needs root (debootstrap), and this is not root" \
        "run once as root:  sudo images/base/bootstrap.sh" "then ./up.sh again"
    fi
  fi

  say "Controller binary: cargo build --release (on the host; several minutes the first time)"
  command -v cargo >/dev/null 2>&1 ||
    die "cargo is missing: offline, the controller is compiled on the host" \
      "install Rust (https://rustup.rs), then ./up.sh again"
  # Ask cargo where it put the binary: CARGO_TARGET_DIR or a cargo config
  # may move it out of target/.
  json=$(cargo build --release --message-format=json-render-diagnostics) ||
    die "cargo build --release failed (its output is above)"
  bin=$(printf '%s\n' "$json" | sed -n 's/.*"executable":"\([^"]*\/bento\)".*/\1/p' | tail -n 1)
  [ -n "$bin" ] && [ -x "$bin" ] || bin="${CARGO_TARGET_DIR:-target}/release/bento"
  [ -x "$bin" ] || die "cargo built no bento binary (looked for $bin)"
  # Dockerfile.prebuilt copies target/release/bento from the build context.
  mkdir -p target/release
  if ! [ "$bin" -ef target/release/bento ]; then
    cp -f "$bin" target/release/bento
    echo "$bin -> target/release/bento (the build context's copy)"
  fi
  echo "built $(target/release/bento --version 2>/dev/null || echo target/release/bento)"

  export BENTO_CONTROLLER_DOCKERFILE="${BENTO_CONTROLLER_DOCKERFILE:-images/controller/Dockerfile.prebuilt}"
  export BENTO_RUNTIME_IMAGE="${BENTO_RUNTIME_IMAGE:-$offline_base}"
  export BENTO_BASE_IMAGE="${BENTO_BASE_IMAGE:-$offline_base}"
  echo "BENTO_CONTROLLER_DOCKERFILE=$BENTO_CONTROLLER_DOCKERFILE"
  echo "BENTO_RUNTIME_IMAGE=$BENTO_RUNTIME_IMAGE BENTO_BASE_IMAGE=$BENTO_BASE_IMAGE"
fi

# GET /healthz, 200 only when the API is up and the engine answers. Plain
# bash (no curl needed), in a subshell so a refused connection only fails it.
healthz() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    read -r -t 5 _ status _ <&3 || exit 1
    [ "$status" = 200 ]
  ) 2>/dev/null
}

if [ "$offline" = 1 ]; then
  say "Build and start: ${dc[*]} up -d --build (the host's binary in $BENTO_RUNTIME_IMAGE)"
else
  say "Build and start: ${dc[*]} up -d --build (compiles the controller in a container: several minutes the first time)"
fi
if ! compose up -d --build; then
  if [ "$offline" = 1 ]; then
    die "${dc[*]} up -d --build failed (its output is above)"
  else
    die "${dc[*]} up -d --build failed (its output is above)" \
      "could it not pull an image? Without a registry take the offline route: BENTO_OFFLINE=1 ./up.sh"
  fi
fi

say "Waiting for $url/healthz (at most ${BENTO_UP_TIMEOUT:-300}s)"
cid=$(compose ps -a -q controller)
[ -n "$cid" ] || die "${dc[*]} started no controller container" "see: ${dc[*]} ps; ${dc[*]} logs controller"
deadline=$((SECONDS + ${BENTO_UP_TIMEOUT:-300}))
until healthz; do
  state=$(docker inspect -f '{{.State.Status}}' "$cid" 2>/dev/null || echo gone)
  if [ "$state" != running ]; then
    compose logs --tail 30 controller >&2 || true
    die "the controller is not running (state: $state); its last log lines are above" \
      "more: ${dc[*]} logs controller" \
      "offline, a binary built on a newer distribution than the base (GLIBC_... not found) cannot run in it"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    compose logs --tail 30 controller >&2 || true
    die "no answer from $url/healthz in ${BENTO_UP_TIMEOUT:-300}s; the controller's last log lines are above" \
      "more: ${dc[*]} logs controller; docker inspect --format '{{json .State.Health}}' $cid"
  fi
  sleep 1
done

step=""
cat <<EOF

Bento is up at $url (${dc[*]}, $([ "$offline" = 1 ] && echo offline || echo online) route, ${SECONDS}s).

Next, the CLI and a first function (README, "Quickstart"):
EOF
[ "$port" = 7470 ] || echo "  export BENTO_URL=$url"
cat <<EOF
  cargo install --path . --locked             # the bento CLI, in ~/.cargo/bin
  bento submit examples/echo.py --name echo
  printf 'hello\\nworld\\n' | bento run echo

Logs: ${dc[*]} logs -f controller     Stop: ${dc[*]} down
EOF
