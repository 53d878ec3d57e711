#!/bin/sh
# Process benchmarks: each figure next to its floor, measured in the same
# run, and the ratio. Builds the C floors with `cc -O2` into bench/out/.
#
#   bench/run.sh [all|spawn|capture|lines|start] ...
#
# Environment:
#   ROUNDS=5          rounds; within a round the subjects alternate with the
#                     floor, and the table shows medians over the rounds
#   PROCRUN=build/procrun   the binary under test; procmon.so is taken from
#                     the same directory (MODULE_DIR) for the lua5.4 rows
#   START_RUNS=100    hyperfine runs per command per round (cold start)
#   SPAWN_N=1000 SPAWN_K=8  CAPTURE_BYTES=268435456  LINES=2000000
#
# Needs: cc, lua5.4 (+ lua-cjson), hyperfine, GNU time (/usr/bin/time),
# seq; node for the readline reference row (skipped if missing).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B="$ROOT/bench/proc"
OUT="$ROOT/bench/out"
ROUNDS=${ROUNDS:-5}
PROCRUN=${PROCRUN:-$ROOT/build/procrun}
MODULE_DIR=${MODULE_DIR:-$(dirname "$PROCRUN")}
START_RUNS=${START_RUNS:-100}
SPAWN_N=${SPAWN_N:-1000}
SPAWN_K=${SPAWN_K:-8}
CAPTURE_BYTES=${CAPTURE_BYTES:-268435456}
LINES=${LINES:-2000000}
WHAT=${*:-all}

[ -x "$PROCRUN" ] || { echo "run.sh: $PROCRUN not built (run make)" >&2; exit 1; }
[ -f "$MODULE_DIR/procmon.so" ] || { echo "run.sh: no procmon.so in $MODULE_DIR" >&2; exit 1; }
export LUA_CPATH="$MODULE_DIR/?.so;;"

mkdir -p "$OUT/proc"
for f in spawn_floor capture_floor lines_floor emit; do
  # the floors include floor.h, so a newer header rebuilds them too
  if [ ! -x "$OUT/$f" ] || [ "$B/$f.c" -nt "$OUT/$f" ] || [ "$B/floor.h" -nt "$OUT/$f" ]; then
    cc -O2 -o "$OUT/$f" "$B/$f.c"
  fi
done

REC="$OUT/proc/records.txt"   # one line per measurement (see rec)
: > "$REC"
TIMEF="$OUT/proc/time.txt"
have_time=0; [ -x /usr/bin/time ] && have_time=1
have_node=0; command -v node > /dev/null 2>&1 && have_node=1

# rec KEY CMD...: runs a harness (which prints its wall seconds first and,
# for capture, its own peak RSS last) and records: key, wall seconds, peak
# RSS in KiB (GNU time's %M, else the harness's figure) and CPU seconds
# (user + sys, children included, from GNU time; 0 without it).
rec() {
  key=$1; shift
  if [ $have_time = 1 ]; then
    line=$(/usr/bin/time -f '%M %U %S' -o "$TIMEF" "$@")
    rc=$(tail -n 1 "$TIMEF" | awk '{printf "%s %.2f", $1, $2 + $3}')
  else
    line=$("$@")
    case $key in capture.*) rc="$(echo "$line" | awk '{print $NF}') 0";; *) rc="0 0";; esac
  fi
  echo "$key $(echo "$line" | awk '{print $1}') $rc" >> "$REC"
}

# rss KEY CMD...: the command's peak RSS (GNU time's %M).
rss() {
  key=$1; shift
  /usr/bin/time -f %M -o "$TIMEF" "$@"
  echo "$key 0 $(tail -n 1 "$TIMEF")" >> "$REC"
}

want() { case " $WHAT " in *" all "*|*" $1 "*) return 0;; esac; return 1; }

r=1
while [ $r -le "$ROUNDS" ]; do
  echo "round $r/$ROUNDS" >&2
  if want spawn; then
    rec spawn.floor "$OUT/spawn_floor" "$SPAWN_N" "$SPAWN_K"
    rec spawn.procrun "$PROCRUN" "$B/spawn.lua" "$SPAWN_N" "$SPAWN_K"
    rec spawn.procrun_null "$PROCRUN" "$B/spawn.lua" "$SPAWN_N" "$SPAWN_K" null
    rec spawn.lua54 lua5.4 "$B/spawn.lua" "$SPAWN_N" "$SPAWN_K"
  fi
  if want capture; then
    # The two subjects swap places every round: on this VM the process
    # that runs right after another one's 256-512 MiB was freed gets
    # memory of very different cost (first touch of pages the host took
    # back, or not), and a fixed order gave one subject the bad place in
    # every round (bench/NOTES.md).
    rec capture.floor "$OUT/capture_floor" "$OUT/emit" "$CAPTURE_BYTES"
    if [ $((r % 2)) = 1 ]; then
      rec capture.procrun "$PROCRUN" "$B/capture.lua" "$OUT/emit" "$CAPTURE_BYTES"
      rec capture.lua54 lua5.4 "$B/capture.lua" "$OUT/emit" "$CAPTURE_BYTES"
    else
      rec capture.lua54 lua5.4 "$B/capture.lua" "$OUT/emit" "$CAPTURE_BYTES"
      rec capture.procrun "$PROCRUN" "$B/capture.lua" "$OUT/emit" "$CAPTURE_BYTES"
    fi
  fi
  if want lines; then
    rec lines.floor "$OUT/lines_floor" seq 1 "$LINES"
    rec lines.procrun "$PROCRUN" "$B/lines.lua" seq 1 "$LINES"
    BENCH_GC=generational rec lines.procrun_gen "$PROCRUN" "$B/lines.lua" seq 1 "$LINES"
    rec lines.lua54 lua5.4 "$B/lines.lua" seq 1 "$LINES"
    [ $have_node = 1 ] && rec lines.node node "$B/lines_readline.js" seq 1 "$LINES"
  fi
  if want start; then
    hyperfine -N --warmup 20 --runs "$START_RUNS" --style none \
      --export-json "$OUT/proc/start.json" \
      "lua5.4 -e ''" \
      "$PROCRUN -e ''" \
      "$PROCRUN -e 'require\"procmon\"'" \
      "lua5.4 -e 'require\"procmon\"'" > /dev/null 2> "$OUT/proc/hyperfine.err" ||
      { cat "$OUT/proc/hyperfine.err" >&2; exit 1; }
    HF="$OUT/proc/start.json" lua5.4 -e '
      local j = require("cjson").decode(io.open(os.getenv("HF")):read("a"))
      local keys = { "start.floor", "start.procrun", "start.procrun_require", "start.lua54_require" }
      for i, r in ipairs(j.results) do print(keys[i] .. " " .. r.median) end' >> "$REC"
    if [ $have_time = 1 ]; then
      rss rss.lua54_bare lua5.4 -e ''
      rss rss.procrun_bare "$PROCRUN" -e ''
      rss rss.procrun_require "$PROCRUN" -e 'require "procmon"'
      rss rss.procrun_sleep "$PROCRUN" -e 'require("procmon").sleep(0.2)'
    fi
  fi
  r=$((r + 1))
done

cp "$REC" "$OUT/proc/records-$(date +%Y%m%d-%H%M%S).txt"
lua5.4 "$B/summary.lua" "$REC"
