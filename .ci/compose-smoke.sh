#!/usr/bin/env bash
# shellcheck disable=SC2015  # Checks read "CONDITION && ok ... || not_ok ...": ok only prints and counts.
# Smoke test of the compose stack (docker-compose.yml, docs/compose.md) as
# a user brings it up: with `./up.sh`, the README's command, typed as it is.
# On a machine with no registry (CI) up.sh takes the offline route: the
# controller binary built on the host and copied into the locally
# bootstrapped base, the function image built FROM that base too.
#
#   .ci/compose-smoke.sh
#
# Isolation comes from the environment only, through the settings up.sh and
# docker-compose.yml document: its own compose project (bento-smoke-PID,
# COMPOSE_PROJECT_NAME), a free loopback port (BENTO_PORT), and the
# repository's config/compose.yaml under a label prefix of its own
# (BENTO_CONFIG_DIR), so it never touches another controller's sessions on
# this engine. Drives the stack with the host's CLI, runs .ci/newcomer.sh
# (the README's Quickstart) against it, then takes it down with its volume.
# Cleans up on any exit. Tags bento/controller:latest and
# bento/python:latest, as up.sh does.
#
# Environment (all optional): BENTO_UP_TIMEOUT seconds up.sh waits for the
# controller (its default: 300); BENTO_SMOKE_NEWCOMER=0 skips .ci/newcomer.sh.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

passed=0
failed=0
summary() {
  echo "compose smoke: $passed passed, $failed failed"
}
ok() {
  passed=$((passed + 1))
  echo "ok   $1"
}
not_ok() {
  failed=$((failed + 1))
  echo "FAIL $1" >&2
  shift
  for line in "$@"; do echo "     $line" >&2; done
}

if command -v docker-compose >/dev/null 2>&1; then
  dc=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  dc=(docker compose)
else
  echo "compose smoke: neither docker-compose nor docker compose is installed" >&2
  exit 1
fi

project="bento-smoke-$$"
prefix="dev.bento-smoke-$$"
workdir=$(mktemp -d /tmp/bento-compose-smoke.XXXXXX)
up=0

# A free TCP port on loopback (the kernel picks it).
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    local p
    for _ in $(seq 1 50); do
      p=$((20000 + RANDOM % 20000))
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    return 1
  fi
}

compose() {
  "${dc[@]}" -p "$project" -f "$root/docker-compose.yml" "$@"
}

# This run's function containers (by its label prefix).
session_containers() {
  docker ps -aq --filter "label=$prefix.session"
}

cleanup() {
  local rc=$?
  if [ "$up" = 1 ]; then
    if [ "$failed" -gt 0 ]; then
      echo "--- controller log (last 40 lines)" >&2
      compose logs --no-color --tail 40 controller >&2 2>/dev/null || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  # Whatever is left of this run, and only of this run.
  local left
  left=$(session_containers)
  # One ID a line: split on purpose.
  # shellcheck disable=SC2086
  [ -n "$left" ] && docker rm -f $left >/dev/null 2>&1
  docker volume rm "${project}_bento-data" >/dev/null 2>&1 || true
  rm -rf "$workdir"
  # The last line, whatever happened.
  summary
  [ "$failed" -gt 0 ] && [ "$rc" = 0 ] && rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'not_ok "interrupted"; exit 130' INT TERM

# Stops at the first failure that leaves nothing to test.
fatal() {
  not_ok "$@"
  exit 1
}

start=$(date +%s)

echo "== settings"
# config/compose.yaml as it is, but for this run's label prefix.
mkdir -p "$workdir/config"
cp -r config/images "$workdir/config/images"
sed "s/^label_prefix: .*/label_prefix: $prefix/" config/compose.yaml >"$workdir/config/compose.yaml"
grep -q "^label_prefix: $prefix\$" "$workdir/config/compose.yaml" ||
  fatal "config/compose.yaml has no label_prefix line to replace"
export BENTO_CONFIG_DIR="$workdir/config"
BENTO_PORT=$(free_port) || fatal "no free port"
export BENTO_PORT
export BENTO_URL="http://127.0.0.1:$BENTO_PORT"
export COMPOSE_PROJECT_NAME="$project"
unset BENTO_API_KEY BENTO_OFFLINE BENTO_CONTROLLER_DOCKERFILE BENTO_RUNTIME_IMAGE BENTO_BASE_IMAGE
echo "project $project, port $BENTO_PORT, label prefix $prefix, ${dc[*]}"

echo "== ./up.sh (the README's command, as typed)"
up=1
# Its output is shown as it comes (a first run takes minutes) and kept.
./up.sh 2>&1 | tee "$workdir/up.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || fatal "./up.sh" "exit $rc"
grep -q "^Bento is up at $BENTO_URL " "$workdir/up.log" &&
  ok "./up.sh: exit 0, says Bento is up at $BENTO_URL ($(($(date +%s) - start))s)" ||
  fatal "./up.sh says Bento is up at $BENTO_URL" "$(tail -n 3 "$workdir/up.log")"

cid=$(compose ps -a -q controller)
[ -n "$cid" ] || fatal "no controller container"
health=$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)
# up.sh waited for /healthz; Docker's own check runs every 5s and may not
# have run yet: wait for it to agree (bounded).
deadline=$(($(date +%s) + 30))
while [ "$health" = starting ] && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 1
  health=$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)
done
[ "$health" = healthy ] && ok "controller container healthy (Docker's check)" ||
  fatal "controller container healthy (Docker's check)" "health: $health"

# The CLI: where up.sh's offline route put it, else cargo's own output.
bento="$root/target/release/bento"
[ -x "$bento" ] || bento="${CARGO_TARGET_DIR:-$root/target}/release/bento"
[ -x "$bento" ] || fatal "a host CLI binary (target/release/bento)" "build it: cargo build --release"

image_status=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$(compose ps -a -q python-image)" 2>/dev/null)
[ "$image_status" = "exited 0" ] && ok "python-image built, its container exited 0" ||
  not_ok "python-image built, its container exited 0" "state: $image_status"

echo "== functions"
cli() { timeout 60 "$bento" "$@"; }
counter_id=$(cli submit examples/counter.py --name counter) && [ -n "$counter_id" ] &&
  ok "submit counter ($counter_id)" || fatal "submit counter"
echo_id=$(cli submit examples/echo.py --name echo) && [ -n "$echo_id" ] &&
  ok "submit echo ($echo_id)" || fatal "submit echo"

out=$(printf 'hello\nworld\nstop\n' | cli run echo)
rc=$?
want=$'echoing; type stop to end\nhello\nworld\nbye'
[ "$rc" = 0 ] && [ "$out" = "$want" ] && ok "run echo: output and exit 0" ||
  not_ok "run echo: output and exit 0" "exit $rc" "output: $(echo "$out" | tr '\n' '|')"

echo "== detach and reattach"
n=30
token=$(cli run -d counter "$n" 0.2)
rc=$?
[ "$rc" = 0 ] && [ -n "$token" ] && ok "run -d counter" || fatal "run -d counter" "exit $rc"

# Attach until some output has come (however slowly the container starts),
# then Ctrl-C: the CLI detaches with 130 and the function goes on. (Its
# SIGINT handler is in place before it prints anything, so the signal is not
# lost to the SIG_IGN a background job of a script starts with.)
: >"$workdir/attach1.out"
"$bento" attach "$token" --no-stdin >"$workdir/attach1.out" 2>"$workdir/attach1.err" &
attach_pid=$!
deadline=$(($(date +%s) + 60))
while [ "$(wc -l <"$workdir/attach1.out" 2>/dev/null || echo 0)" -lt 3 ] && kill -0 "$attach_pid" 2>/dev/null &&
  [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 0.1
done
kill -INT "$attach_pid" 2>/dev/null
wait "$attach_pid"
rc=$?
first=$(cat "$workdir/attach1.out")
[ "$rc" = 130 ] && [ -n "$first" ] && ok "attach, then Ctrl-C detaches (exit 130)" ||
  not_ok "attach, then Ctrl-C detaches (exit 130)" "exit $rc" "output: $(echo "$first" | tr '\n' '|')" \
    "$(cat "$workdir/attach1.err")"

# ls shows tokens by their first 12 characters (--no-trunc for all).
short=${token:0:12}
listing=$(cli ls)
rc=$?
echo "$listing" | grep "^$short " | grep -q running && ok "ls shows the session running" ||
  not_ok "ls shows the session running" "exit $rc" "$listing"

second=$(cli attach "$token" --no-stdin 2>"$workdir/attach2.err")
rc=$?
[ "$rc" = 0 ] && ok "attach again to the end: exit 0" ||
  not_ok "attach again to the end: exit 0" "exit $rc" "$(cat "$workdir/attach2.err")"
want=$( (seq 0 $((n - 1)); echo "counted to $n") )
got=$(printf '%s\n%s\n' "$first" "$second")
[ "$got" = "$want" ] && ok "both attaches together: the whole output, in order, once" ||
  not_ok "both attaches together: the whole output, in order, once" \
    "first: $(echo "$first" | tr '\n' ' ')" "second: $(echo "$second" | tr '\n' ' ')"

# Delivered and ended: the controller reaps the session and its container.
deadline=$(($(date +%s) + 20))
while [ -n "$(session_containers)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.5; done
[ -z "$(session_containers)" ] && ok "ended sessions' containers removed" ||
  not_ok "ended sessions' containers removed" "left: $(session_containers | tr '\n' ' ')"

deadline=$(($(date +%s) + 10))
while listing=$(cli ls); rc=$?; echo "$listing" | grep -q "^$short " && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 0.5
done
[ "$rc" = 0 ] && ! echo "$listing" | grep -q "^$short " && ok "ls: the session is gone" ||
  not_ok "ls: the session is gone" "exit $rc" "$listing"

if [ "${BENTO_SMOKE_NEWCOMER:-1}" != 0 ]; then
  echo "== .ci/newcomer.sh: the README's Quickstart against this stack"
  if .ci/newcomer.sh; then
    ok "newcomer: the README's Quickstart, command by command"
  else
    not_ok "newcomer: the README's Quickstart, command by command" "exit $?"
  fi
  # It ends with `bento kill`: the session keeps its unread output (and
  # its stopped container) until a client reads it. Read it to the end (the
  # exit code is the kill's), then the controller reaps both.
  for t in $(cli ls --json | grep -o '"token":"[^"]*"' | cut -d'"' -f4); do
    cli attach "$t" --no-stdin >/dev/null 2>&1
  done
  deadline=$(($(date +%s) + 20))
  while [ -n "$(session_containers)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.5; done
  [ -z "$(session_containers)" ] && ok "the killed session, read to its end, is reaped with its container" ||
    not_ok "the killed session, read to its end, is reaped with its container" \
      "left: $(session_containers | tr '\n' ' ')" "$(cli ls 2>&1)"
fi

echo "== down"
if compose down -v --remove-orphans >"$workdir/down.log" 2>&1; then
  up=0
  ok "compose down -v"
else
  not_ok "compose down -v" "$(tail -n 5 "$workdir/down.log")"
fi
! docker volume inspect "${project}_bento-data" >/dev/null 2>&1 && ok "volume removed" ||
  not_ok "volume removed" "${project}_bento-data still exists"
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
[ -z "$left$(session_containers)" ] && ok "no containers left from this run" ||
  not_ok "no containers left from this run" "compose project: $(echo "$left" | tr '\n' ' ')" \
    "sessions: $(session_containers | tr '\n' ' ')"

echo "time: $(($(date +%s) - start))s"
[ "$failed" = 0 ]
