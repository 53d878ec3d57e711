#!/bin/sh
# Cold start of a statusline command: read the payload on stdin, track the
# session through the cache, print one line (bench/start/statusline.lua),
# against a bare `lua5.4 -e ''` start measured in the same run. Each round
# runs every command RUNS times, interleaved, with stdin from a fixture
# payload (bench/start/coldstart.c: hyperfine 1.15 cannot feed stdin); the
# table shows per-round medians and the median of the per-round ratios.
#
#   bench/statusline.sh            (make first)
#
# Environment: ROUNDS=5 RUNS=100 PROCRUN=build/procrun
#   BUN=path/to/bun adds the same job in Bun (bench/start/statusline.ts);
#   found on PATH otherwise, skipped if missing.
#   STATE_DIRS="/tmp /dev/shm": parents of the fresh state dirs, one pass each
#   (ext4 and tmpfs here: a cache write costs far more on ext4).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/out"
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-100}
PROCRUN=${PROCRUN:-$ROOT/build/procrun}
MODULE_DIR=$(dirname "$PROCRUN")
PAYLOAD="$ROOT/spec/fixtures/claude-code/statusline/full-v2.1.240.json"
STATE_DIRS=${STATE_DIRS:-/tmp /dev/shm}
BUN=${BUN:-$(command -v bun || true)}
export LUA_CPATH="$MODULE_DIR/?.so;;" NO_COLOR=1

[ -x "$PROCRUN" ] || { echo "statusline.sh: $PROCRUN not built (run make)" >&2; exit 1; }
mkdir -p "$OUT"
if [ ! -x "$OUT/coldstart" ] || [ "$ROOT/bench/start/coldstart.c" -nt "$OUT/coldstart" ]; then
  cc -O2 -o "$OUT/coldstart" "$ROOT/bench/start/coldstart.c"
fi

for parent in $STATE_DIRS; do
  [ -d "$parent" ] || continue
  state=$(mktemp -d "$parent/procmon-bench-XXXXXX")
  echo "state dir: $state ($(stat -f -c %T "$parent")), payload: $(basename "$PAYLOAD"), $ROUNDS rounds x $RUNS runs"
  set -- floor lua5.4 -e "" \
    -- procrun "$PROCRUN" "$ROOT/bench/start/statusline.lua" \
    -- "lua5.4+procmon.so" lua5.4 "$ROOT/bench/start/statusline.lua" \
    -- "procrun example" "$PROCRUN" "$ROOT/scripts/examples/statusline.lua"
  [ -n "$BUN" ] && set -- "$@" -- bun "$BUN" "$ROOT/bench/start/statusline.ts"
  PROCMON_STATE_DIR=$state "$OUT/coldstart" "$ROUNDS" "$RUNS" "$PAYLOAD" "$@" > "$OUT/statusline.txt"
  rm -rf "$state"
  # Per round: ratio to that round's floor; then the median over rounds.
  # With BENCH_ROWS (bench/run), the rows also go there, tab-separated.
  awk -v rows="${BENCH_ROWS:-}" -v fs="$(stat -f -c %T "$parent")" '
    $1 == "floor" { f[$2] = $3 }
    { name = $1; for (i = 2; i < NF - 1; i++) name = name " " $i
      r = $(NF - 1); t[name, r] = $NF; if (!(name in seen)) { seen[name] = 1; order[++n] = name }
      rounds = r > rounds ? r : rounds }
    function median(a, k,   i, j, x) {
      for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    END {
      printf "%-20s %10s %8s %15s\n", "command", "median", "ratio", "range"
      for (i = 1; i <= n; i++) {
        nm = order[i]; delete ts; delete rs
        for (r = 1; r <= rounds; r++) { ts[r] = t[nm, r]; rs[r] = t[nm, r] / f[r] }
        lo = hi = rs[1]; for (r = 2; r <= rounds; r++) { if (rs[r] < lo) lo = rs[r]; if (rs[r] > hi) hi = rs[r] }
        med = median(ts, rounds); q = median(rs, rounds)
        printf "%-20s %8.2f ms %7.2fx %7.2f-%.2fx\n", nm, med * 1000, q, lo, hi
        if (nm == "floor") fmed = med
        if (nm == "procrun") pmed = med
        if (nm == "bun") bmed = med
        if (rows != "" && nm != "floor") {
          timed = nm == "procrun" || nm == "procrun example"
          goal = timed ? "<=1.5x" : ""
          verdict = !timed ? "" : (q <= 1.5 ? "ok" : "MISS")
          printf "statusline cold start (state dir on %s)\t%s\t%.2f ms\t%.2f ms (lua5.4 -e \047\047)\t%.2fx\t%.2f-%.2f\t\t%s\t%s\n", \
            fs, nm, med * 1000, fmed * 1000, q, lo, hi, goal, verdict >> rows
        }
      }
      if (rows != "" && bmed > 0)
        printf "statusline cold start (state dir on %s)\tBun / procrun\t%.2f ms (bun)\t%.2f ms (procrun)\t%.1fx faster\t\t\t>=10x\t%s\n", \
          fs, bmed * 1000, pmed * 1000, bmed / pmed, (bmed / pmed >= 10 ? "ok" : "MISS") >> rows
    }' "$OUT/statusline.txt"
done
