#!/usr/bin/env bash
# Measures what a newcomer waits for: `make run` on a fresh clone of HEAD with every cache empty
# (Go modules, Go build cache, npm, the tool cache), from the command to the operator's
# "caches synced" log line; then the same command again, warm, after stopping its cluster.
#
#   hack/tools/cold-run.sh [WORKDIR]    WORKDIR (default: a new temporary directory) holds the
#                                       clone, the empty caches and the two logs; it is kept
#
# Run it on an otherwise idle machine: the cold figure is the compile of ~2600 Go packages on
# however many cores there are, and anything else running moves it.
set -euo pipefail

repo=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
work=${1:-$(mktemp -d -t echo-cold-run.XXXXXX)}
mkdir -p "$work"
if [[ -e $work/clone || -e $work/cache ]]; then
  echo "$work already holds a clone or caches: give an empty directory" >&2
  exit 2
fi
git clone --quiet "$repo" "$work/clone"
export GOMODCACHE=$work/cache/go-mod GOCACHE=$work/cache/go-build GOFLAGS=-modcacherw \
  npm_config_cache=$work/cache/npm ECHO_TOOLS_CACHE=$work/cache/tools

# time_make_run LOG: seconds from `make run` to "caches synced"; then stops it (not its cluster)
time_make_run() {
  local log=$1 start pid
  start=$(date +%s.%N)
  (cd "$work/clone" && exec setsid make run) >"$log" 2>&1 &
  pid=$!
  until grep -q 'caches synced' "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "make run exited before the operator's caches synced: see $log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "$(date +%s.%N) - $start" | bc
  kill -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

echo "cold make run in $work/clone (commit $(git -C "$work/clone" rev-parse --short HEAD))" >&2
cold=$(time_make_run "$work/cold.log")
make -C "$work/clone" --no-print-directory cluster-down >/dev/null 2>&1
warm=$(time_make_run "$work/warm.log")
make -C "$work/clone" --no-print-directory cluster-down >/dev/null 2>&1
grep -o '[a-z-]* v[^ ]*: built in [0-9]*s' "$work/cold.log" || true
printf 'cold make run: %.0f s\nwarm make run: %.1f s\n' "$cold" "$warm"
