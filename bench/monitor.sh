#!/bin/sh
# Monitor benchmarks, each figure next to its floor from the same run:
#   1. `procrun ps --json` and `ps --all --json` over 10,000 records
#      (9,980 finished, 20 running), against ps_floor (a C loop doing the
#      same reads and one write, no parsing); goal: under 100 ms.
#   2. 1,000 concurrently monitored `sleep` children: procrun's peak RSS
#      (goal: under 64 MiB), next to 1,000 plain pm.spawn children.
#   3. spawn throughput: N x /bin/true, K at a time, through mon:run,
#      against pm.run, alternating in one process (the cost of the record
#      writes, as a ratio).
#   1 and 3 run on the state dir's filesystem and again on /dev/shm (tmpfs,
#   where $XDG_RUNTIME_DIR usually is) when it is one.
#
#   bench/monitor.sh            (make first)
#
# Environment: ROUNDS=5 RECORDS=10000 MANY=1000 SPAWN_N=1000 SPAWN_K=8
#   PS_RUNS=30 (hyperfine runs per command per round) PROCRUN=build/procrun
#   PROCMON_STATE_DIR etc. choose the state dir (its filesystem matters).
# Needs: cc, hyperfine, lua5.4 (+ lua-cjson, for hyperfine's JSON), sleep.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B="$ROOT/bench/monitor"
OUT="$ROOT/bench/out/monitor"
ROUNDS=${ROUNDS:-5}
RECORDS=${RECORDS:-10000}
MANY=${MANY:-1000}
SPAWN_N=${SPAWN_N:-1000}
SPAWN_K=${SPAWN_K:-8}
PS_RUNS=${PS_RUNS:-30}
PROCRUN=${PROCRUN:-$ROOT/build/procrun}

[ -x "$PROCRUN" ] || { echo "monitor.sh: $PROCRUN not built (run make)" >&2; exit 1; }
mkdir -p "$OUT"
if [ ! -x "$OUT/ps_floor" ] || [ "$B/ps_floor.c" -nt "$OUT/ps_floor" ]; then
  cc -O2 -o "$OUT/ps_floor" "$B/ps_floor.c"
fi

STATE=$("$PROCRUN" -e 'print(assert(require("procmon").state_dir()))')
WORK="$STATE/bench-monitor-$$"
mkdir -m 700 "$WORK"
HOLD_PID=
SHM=
# The holder is stopped and waited for first: as it ends it records its
# jobs' ends, which must not race the removal.
trap '[ -n "$HOLD_PID" ] && { kill "$HOLD_PID" 2>/dev/null; wait "$HOLD_PID" 2>/dev/null; }
      rm -rf "$WORK" ${SHM:+"$SHM"}' EXIT
echo "state dir: $STATE ($(stat -f -c %T "$STATE"))"

REC="$OUT/records.txt"
: > "$REC"

# The 10,000 records: generated once, with 20 live running ones held by a
# background procrun for the whole run.
PSDIR="$WORK/ps"
"$PROCRUN" "$B/gen_records.lua" "$PSDIR" "$((RECORDS - 20))"
"$PROCRUN" "$B/hold.lua" "$PSDIR" 20 3600 > "$OUT/hold.out" &
HOLD_PID=$!
until grep -q ready "$OUT/hold.out" 2>/dev/null; do sleep 0.1; done
# The same on tmpfs (where $XDG_RUNTIME_DIR usually is), when /dev/shm is one.
SHM=
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
  SHM=/dev/shm/procmon-bench-$$
  mkdir -m 700 "$SHM"
  cp -a "$PSDIR" "$SHM/ps"
fi
n_all=$("$PROCRUN" ps --all --json --dir "$PSDIR" | grep -c '"id"')
n_run=$("$PROCRUN" ps --json --dir "$PSDIR" | grep -c '"id"')
echo "records: $n_all ($n_run running)"

r=1
while [ "$r" -le "$ROUNDS" ]; do
  echo "round $r/$ROUNDS" >&2
  hyperfine -N --warmup 3 --runs "$PS_RUNS" --style none --export-json "$OUT/ps.json" \
    "$OUT/ps_floor $PSDIR" \
    "$PROCRUN ps --json --dir $PSDIR" \
    "$PROCRUN ps --all --json --dir $PSDIR" > /dev/null
  # --all with its index of finished records removed first: every file read
  hyperfine -N --warmup 3 --runs "$PS_RUNS" --style none --export-json "$OUT/ps_cold.json" \
    --prepare "rm -f $PSDIR/.done-index" "$PROCRUN ps --all --json --dir $PSDIR" > /dev/null
  if [ -n "$SHM" ]; then
    hyperfine -N --warmup 3 --runs "$PS_RUNS" --style none --export-json "$OUT/ps_shm.json" \
      "$OUT/ps_floor $SHM/ps" \
      "$PROCRUN ps --json --dir $SHM/ps" \
      "$PROCRUN ps --all --json --dir $SHM/ps" > /dev/null
    HF="$OUT/ps_shm.json" lua5.4 -e '
      local j = require("cjson").decode(io.open(os.getenv("HF")):read("a"))
      local keys = { "ps_tmpfs.floor", "ps_tmpfs.json", "ps_tmpfs.all_json" }
      for i, r in ipairs(j.results) do print(keys[i] .. " " .. r.median) end' >> "$REC"
  fi
  HF="$OUT/ps.json" lua5.4 -e '
    local j = require("cjson").decode(io.open(os.getenv("HF")):read("a"))
    local keys = { "ps.floor", "ps.json", "ps.all_json" }
    for i, r in ipairs(j.results) do print(keys[i] .. " " .. r.median) end' >> "$REC"
  HF="$OUT/ps_cold.json" lua5.4 -e '
    local j = require("cjson").decode(io.open(os.getenv("HF")):read("a"))
    print("ps.all_cold " .. j.results[1].median)' >> "$REC"
  echo "rss.plain $("$PROCRUN" "$B/many.lua" "$MANY" plain)" >> "$REC"
  rm -rf "$WORK/many"
  echo "rss.monitor $("$PROCRUN" "$B/many.lua" "$MANY" monitor "$WORK/many")" >> "$REC"
  rm -rf "$WORK/spawn"
  echo "spawn $("$PROCRUN" "$B/spawn.lua" "$SPAWN_N" "$SPAWN_K" "$WORK/spawn")" >> "$REC"
  if [ -n "$SHM" ]; then
    rm -rf "$SHM/spawn"
    echo "spawn_tmpfs $("$PROCRUN" "$B/spawn.lua" "$SPAWN_N" "$SPAWN_K" "$SHM/spawn")" >> "$REC"
  fi
  r=$((r + 1))
done

cp "$REC" "$OUT/records-$(date +%Y%m%d-%H%M%S).txt"
lua5.4 - "$REC" "$RECORDS" "$MANY" <<'LUA'
local rec = {}
for line in io.lines(arg[1]) do
  local key, rest = line:match("^(%S+) (.*)$")
  local r = rec[key] or {}
  rec[key] = r
  local i = 0
  for v in rest:gmatch("%S+") do
    i = i + 1
    r[i] = r[i] or {}
    table.insert(r[i], tonumber(v))
  end
end
local function median(xs)
  local s = { table.unpack(xs) }
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end
local function ratios(a, b, f)
  local xs = {}
  for i = 1, math.min(#a, #b) do xs[#xs + 1] = f(a[i], b[i]) end
  table.sort(xs)
  return median(xs), xs[1], xs[#xs]
end
local export = os.getenv("BENCH_ROWS") and assert(io.open(os.getenv("BENCH_ROWS"), "a"))
local function row(name, value, floor, ratio, goal)
  print(("%-46s %-12s %-12s %-18s %s"):format(name, value, floor, ratio, goal))
  if export and value ~= "median" then
    local r, range = ratio:match("^(%S+) %((.*)%)$")
    local g, verdict = goal:match("^(.-) (%u+)$")
    if not g then g, verdict = goal:match("^(.-) (ok)$") end
    export:write(table.concat({ name, "procrun", value, floor, r or "", range or "", "",
      g or goal, verdict or "" }, "\t"), "\n")
  end
end
row("benchmark", "median", "floor", "ratio (range)", "goal")
for _, fs in ipairs { "ps", "ps_tmpfs" } do
  if rec[fs .. ".floor"] then
    local fl = rec[fs .. ".floor"][1]
    local names = { json = "--json", all_json = "--all --json",
      all_cold = "--all --json, index removed" }
    for _, k in ipairs { "json", "all_json", "all_cold" } do
      local t = rec[fs .. "." .. k] and rec[fs .. "." .. k][1]
      if t then
        local ms = median(t) * 1000
        -- cold, every file is read as the floor reads it: no goal of its own
        local goal = k == "all_cold" and "(floor reads the same)"
          or ms < 100 and "< 100 ms ok" or "< 100 ms MISS"
        row(("ps %s, %s records%s"):format(names[k], arg[2], fs == "ps" and "" or " (tmpfs)"),
          ("%.1f ms"):format(ms), ("%.1f ms"):format(median(fl) * 1000),
          ("%.2fx (%.2f-%.2f)"):format(ratios(t, fl, function(x, y) return x / y end)), goal)
      end
    end
  end
end
local plain, mon = rec["rss.plain"][1], rec["rss.monitor"][1]
row(("peak RSS, %s monitored sleep children"):format(arg[3]), ("%.1f MiB"):format(median(mon) / 1024),
  ("%.1f MiB"):format(median(plain) / 1024),
  ("%.2fx (%.2f-%.2f)"):format(ratios(mon, plain, function(x, y) return x / y end)),
  median(mon) < 64 * 1024 and "< 64 MiB ok" or "< 64 MiB MISS")
row(("  time to start %s children"):format(arg[3]), ("%.2f s"):format(median(rec["rss.monitor"][2])),
  ("%.2f s"):format(median(rec["rss.plain"][2])), "", "")
for _, k in ipairs { "spawn", "spawn_tmpfs" } do
  local r = rec[k]
  if r then
    row(("spawn+wait /bin/true, mon:run vs pm.run%s"):format(k == "spawn" and "" or " (tmpfs)"),
      ("%.0f/s"):format(median(r[4])), ("%.0f/s"):format(median(r[3])),
      ("%.2fx (%.2f-%.2f)"):format(ratios(r[1], r[2], function(x, y) return x / y end)), "")
  end
end
LUA
