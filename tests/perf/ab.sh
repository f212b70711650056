#!/usr/bin/env bash
# Interleaved A/B of two controller binaries: controller CPU and wall time
# per 1 GiB stream (16,384 messages of 64 KiB through `bento run --raw`).
#
#   tests/perf/ab.sh OLD_BENTO NEW_BENTO [ROUNDS]
#
# Both controllers serve at once, each with its own data dir and label
# prefix, so a busy machine slows both alike. Needs the function image
# (bento images build) and curl, bc. Removes what it made on exit.
set -euo pipefail
OLD=${1:?usage: ab.sh OLD_BENTO NEW_BENTO [ROUNDS]}
NEW=${2:?usage: ab.sh OLD_BENTO NEW_BENTO [ROUNDS]}
ROUNDS=${3:-6}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/bento-ab.XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/stream.py" <<'PY'
def main(n="16384"):
    b = b"x" * 65536
    for _ in range(int(n)):
        send(b)
PY
chmod 644 "$WORK/stream.py"

start() { # name binary port
  local d="$WORK/$1"
  mkdir -p "$d/config"
  printf 'listen: 127.0.0.1:%s\ndata_dir: %s/data\nimages_dir: %s/config/images\ndriver_dir: %s/driver\nlabel_prefix: ab%s\n' \
    "$3" "$d" "$REPO" "$REPO" "$1" >"$d/config/bento.yaml"
  "$2" serve --config "$d/config/bento.yaml" 2>"$d/serve.log" >/dev/null &
  PIDS+=("$!")
  echo "$!" >"$d/pid"
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$3/v1/sessions" >/dev/null && break
    sleep 0.1
  done
  BENTO_URL="http://127.0.0.1:$3" "$2" submit "$WORK/stream.py" --name stream >/dev/null
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start old "$OLD" 7811
start new "$NEW" 7812
tck=$(getconf CLK_TCK)
for i in $(seq "$ROUNDS"); do
  for v in old new; do
    port=7811
    [ "$v" = new ] && port=7812
    pid=$(cat "$WORK/$v/pid")
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    n=$(BENTO_URL="http://127.0.0.1:$port" "$NEW" run --raw stream 16384 | wc -c)
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    echo "$v round $i: bytes $n wall $(echo "$t1 - $t0" | bc) s controller CPU $(echo "scale=2; ($c1 - $c0) / $tck" | bc) s"
  done
done
