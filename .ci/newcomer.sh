#!/usr/bin/env bash
# shellcheck disable=SC2016  # The commands are quoted as the README writes them, $TOKEN and all.
# The README's Quickstart as a newcomer types it, command by command, on
# this checkout, against a running Bento: the stack `./up.sh` brought up
# (.ci/compose-smoke.sh calls this while its stack is up). Fails at the
# first command that exits non-zero or prints what it should not.
#
#   ./up.sh && .ci/newcomer.sh
#
# Each command is also looked up in README.md, word for word, so the README
# and this script cannot drift apart unnoticed. Two things differ from a
# newcomer's shell, both through the environment only: `cargo install`
# installs into a directory of this run (CARGO_INSTALL_ROOT, put first on
# PATH) instead of ~/.cargo, and Ctrl-C is sent with kill -INT once some
# output has arrived.
#
# Environment: BENTO_URL (default http://127.0.0.1:7470), as for the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

workdir=$(mktemp -d /tmp/bento-newcomer.XXXXXX)
trap 'rm -rf "$workdir"' EXIT
url="${BENTO_URL:-http://127.0.0.1:7470}"
export CARGO_INSTALL_ROOT="$workdir/cargo"
export PATH="$CARGO_INSTALL_ROOT/bin:$PATH"
n=0

fail() {
  printf 'newcomer: FAIL %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '     %s\n' "$line" >&2; done
  exit 1
}
# The README must still say this command, as it is written here.
in_readme() {
  grep -qF -- "$1" README.md || fail "README.md no longer says: $1" "update .ci/newcomer.sh to follow it"
}
step() {
  n=$((n + 1))
  in_readme "$1"
  printf 'newcomer %d: %s\n' "$n" "$1"
}

# The Quickstart begins with Bento running (./up.sh).
host_port="${url#http://}"
host_port="${host_port%%/*}"
(
  exec 3<>"/dev/tcp/${host_port%:*}/${host_port##*:}"
  printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
  read -r -t 5 _ status _ <&3
  [ "$status" = 200 ]
) 2>/dev/null || fail "nothing answers $url/healthz" "bring Bento up first: ./up.sh"
in_readme "./up.sh"

step "cargo install --path . --locked"
cargo install --quiet --path . --locked || fail "cargo install --path . --locked" "exit $?"
[ "$(command -v bento)" = "$CARGO_INSTALL_ROOT/bin/bento" ] ||
  fail "bento on PATH is the installed one" "found: $(command -v bento || echo nothing)"

step "bento images build"
bento images build || fail "bento images build" "exit $?"

step "bento submit examples/echo.py --name echo"
id=$(bento submit examples/echo.py --name echo) || fail "bento submit echo" "exit $?"
[ -n "$id" ] || fail "bento submit echo prints the function id"

step "printf 'hello\nworld\n' | bento run echo"
out=$(printf 'hello\nworld\n' | bento run echo) || fail "bento run echo" "exit $?" "output: $out"
want=$'echoing; type stop to end\nhello\nworld\nbye'
[ "$out" = "$want" ] || fail "bento run echo prints the input back" "got: $(echo "$out" | tr '\n' '|')"

step "bento submit examples/counter.py --name counter"
bento submit examples/counter.py --name counter >/dev/null || fail "bento submit counter" "exit $?"

step 'TOKEN=$(bento run -d counter 1000 0.1)'
TOKEN=$(bento run -d counter 1000 0.1) || fail "bento run -d counter" "exit $?"
[ -n "$TOKEN" ] || fail "bento run -d prints the token"

# `bento attach` until some output has come, then Ctrl-C: it detaches with
# 130 and the function goes on.
attach_then_ctrl_c() {
  local out=$1 pid rc deadline
  : >"$out"
  bento attach "$TOKEN" --no-stdin >"$out" 2>"$out.err" &
  pid=$!
  deadline=$((SECONDS + 60))
  while [ "$(wc -l <"$out")" -lt 3 ] && kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.1
  done
  kill -INT "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 130 ] || fail "bento attach, then Ctrl-C, exits 130" "exit $rc" "$(cat "$out.err")"
  [ -s "$out" ] || fail "bento attach printed the output so far"
}

step 'bento attach "$TOKEN" --no-stdin'
attach_then_ctrl_c "$workdir/first"

step "bento ls"
listing=$(bento ls) || fail "bento ls" "exit $?"
# (ls shows a token's first 12 characters.)
echo "$listing" | grep "^${TOKEN:0:12} " | grep -q running || fail "bento ls shows the session running" "$listing"

step 'bento attach "$TOKEN" --no-stdin'
attach_then_ctrl_c "$workdir/second"
last=$(tail -n 1 "$workdir/first")
next=$(head -n 1 "$workdir/second")
[ "$next" = $((last + 1)) ] ||
  fail "the second attach continues exactly where the first left" "first ended at $last, second began at $next"

step 'bento kill "$TOKEN"'
bento kill "$TOKEN" || fail "bento kill" "exit $?"

echo "newcomer: the Quickstart worked, $n commands"
