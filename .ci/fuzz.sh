#!/usr/bin/env bash
# Fuzzes every decoder of untrusted bytes (fuzz/, docs/fuzzing.md): builds
# all cargo-fuzz targets once, runs each for FUZZ_SECONDS (default 15), and
# fails if any of them finds a crash, a timeout or a runaway allocation.
# The failing input is printed as hex, since a CI machine's fuzz/artifacts/
# does not outlive the run.
#
#   FUZZ_SECONDS=60 .ci/fuzz.sh               # every target, 60 s each
#   FUZZ_TARGETS="driver_frame" .ci/fuzz.sh   # only these (space separated)
#   FUZZ_TARGET_DIR=/var/cache/bento-fuzz .ci/fuzz.sh
#       # build outside the clone: a fresh clone then rebuilds only bento
#       # itself, not its ~230 dependencies (default: fuzz/target)
#
# cargo-fuzz wants nightly; the machine's stable toolchain does it with
# RUSTC_BOOTSTRAP=1 (the flags it passes, -Zsanitizer=address and friends,
# are nightly-only).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../fuzz"

export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-15}"
# Always explicit, so a CARGO_TARGET_DIR meant for the main crate's normal
# builds is never filled with sanitizer builds.
target_dir="${FUZZ_TARGET_DIR:-$PWD/target}"
# Limits of one run: a single input taking longer than 10 s, one allocation
# over 64 MiB or the process over 2 GiB counts as a failure. The decoders
# never need more than about 2 MiB (a frame of MAX_PAYLOAD).
fuzz_args=(-max_total_time="$seconds" -timeout=10 -malloc_limit_mb=64 -rss_limit_mb=2048)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a targets <<<"$FUZZ_TARGETS"
else
  mapfile -t targets < <(cargo fuzz list)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "no fuzz targets found" >&2
  exit 1
fi

echo "== building ${#targets[@]} fuzz targets"
cargo fuzz build --target-dir "$target_dir"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
failed=()
for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${seconds}s"
  mkdir -p "corpus/$t"
  touch "$logs/$t.start"
  # New inputs libFuzzer finds go to corpus/$t (ignored by git, kept between
  # local runs); the committed seeds are the seed-* files there.
  if cargo fuzz run --target-dir "$target_dir" "$t" "corpus/$t" -- "${fuzz_args[@]}" >"$logs/$t.log" 2>&1; then
    grep -E '^Done [0-9]+ runs' "$logs/$t.log" || tail -n 1 "$logs/$t.log"
  else
    failed+=("$t")
    echo "!! $t FAILED; the end of its log:" >&2
    tail -n 100 "$logs/$t.log" >&2
    find "artifacts/$t" -type f -newer "$logs/$t.start" 2>/dev/null | while read -r a; do
      echo "!! input $a ($(wc -c <"$a") bytes), hex:" >&2
      od -An -tx1 -v "$a" | head -n 64 >&2
    done || true
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzzing failed: ${failed[*]} (reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET artifacts/TARGET/FILE)" >&2
  exit 1
fi
echo "fuzzing passed: ${#targets[@]} targets, ${seconds}s each"
