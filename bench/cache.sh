#!/bin/sh
# Cache benchmark: procmon.cache set/get against a C floor doing the same
# syscalls (temp + write + rename; open + read), in the same run, on the
# state directory's own filesystem. Rounds alternate floor and subjects;
# the table shows medians and the per-round ratio range.
#
#   bench/cache.sh            (make first)
#
# Environment: ROUNDS=5 N=20000 KEYS=1000 PROCRUN=build/procrun
#   DURABLE=1 adds a row for durable = true (fsync file and directory),
#   with DURABLE_N=2000 operations (fsync is slow; per-op figures compare).
#   PROCMON_STATE_DIR etc. choose the state dir as usual.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/bench/out"
ROUNDS=${ROUNDS:-5}
N=${N:-20000}
KEYS=${KEYS:-1000}
PROCRUN=${PROCRUN:-$ROOT/build/procrun}
MODULE_DIR=$(dirname "$PROCRUN")
export LUA_CPATH="$MODULE_DIR/?.so;;"

[ -x "$PROCRUN" ] || { echo "cache.sh: $PROCRUN not built (run make)" >&2; exit 1; }
mkdir -p "$OUT"
if [ ! -x "$OUT/cache_floor" ] || [ "$ROOT/bench/cache_floor.c" -nt "$OUT/cache_floor" ]; then
  cc -O2 -o "$OUT/cache_floor" "$ROOT/bench/cache_floor.c"
fi

STATE=$("$PROCRUN" -e 'print(assert(require("procmon").state_dir and
  require("procmon").state_dir() or require("procmon.sys").state_dir()))')
WORK="$STATE/bench-cache-$$"
mkdir -m 700 "$WORK"
trap 'rm -rf "$WORK"' EXIT

echo "state dir: $STATE"
echo "filesystem: $(stat -f -c %T "$STATE") ($(df -T "$STATE" | awk 'NR == 2 {print $1 ", " $2}'))"
echo "$N set then $N get over $KEYS keys, $ROUNDS rounds"

REC="$OUT/cache-records.txt"
: > "$REC"
# run NAME OPS CMD...: a fresh directory per run; records
# "NAME OPS set-seconds get-seconds".
run() {
  name=$1; ops=$2; shift 2
  rm -rf "$WORK/d"
  mkdir -m 700 "$WORK/d"
  echo "$name $ops $("$@" "$WORK/d" "$ops" "$KEYS")" >> "$REC"
}
lua_run() { interp=$1; shift; "$interp" "$ROOT/bench/cache_bench.lua" "$@"; }
durable_run() { "$PROCRUN" "$ROOT/bench/cache_bench.lua" "$@" durable; }

r=1
while [ "$r" -le "$ROUNDS" ]; do
  echo "round $r/$ROUNDS" >&2
  run floor "$N" "$OUT/cache_floor"
  run procrun "$N" lua_run "$PROCRUN"
  run lua5.4 "$N" lua_run lua5.4
  if [ "${DURABLE:-0}" = 1 ]; then run durable "${DURABLE_N:-2000}" durable_run; fi
  r=$((r + 1))
done

lua5.4 - "$REC" "$KEYS" <<'LUA'
-- Per-operation times: medians over the rounds, ratio = floor / subject.
local rec, order = {}, {}
for line in io.lines(arg[1]) do
  local name, n, s, g = line:match("^(%S+) (%S+) (%S+) (%S+)")
  if not rec[name] then rec[name] = { set = {}, get = {} }; order[#order + 1] = name end
  table.insert(rec[name].set, tonumber(s) / tonumber(n))
  table.insert(rec[name].get, tonumber(g) / tonumber(n))
end
local function median(xs)
  local s = { table.unpack(xs) }
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end
local floor = rec.floor
local export = os.getenv("BENCH_ROWS") and assert(io.open(os.getenv("BENCH_ROWS"), "a"))
print(("%-8s %-4s %12s %10s %8s %12s %6s"):format("subject", "op", "ops/s", "us/op",
  "ratio", "round range", "goal"))
for _, name in ipairs(order) do
  for _, op in ipairs { "set", "get" } do
    local t = median(rec[name][op])
    local ratio = median(floor[op]) / t
    local lo, hi
    for i = 1, math.min(#rec[name][op], #floor[op]) do
      local x = floor[op][i] / rec[name][op][i]
      lo, hi = math.min(lo or x, x), math.max(hi or x, x)
    end
    local goal = op == "set" and 0.8 or 0.5
    local verdict = name == "floor" and "" or name == "durable" and "-"
      or (ratio >= goal and "ok" or "MISS")
    print(("%-8s %-4s %12.0f %10.2f %7.2fx %5.2f-%-5.2f %6s"):format(name, op,
      1 / t, t * 1e6, ratio, lo, hi, verdict))
    if export and name ~= "floor" then
      export:write(table.concat({ ("cache %s, %d keys"):format(op, arg[2] or 1000), name,
        ("%.1f us/op (%.0f/s)"):format(t * 1e6, 1 / t),
        ("%.1f us/op"):format(median(floor[op]) * 1e6), ("%.2fx"):format(ratio),
        ("%.2f-%.2f"):format(lo, hi), "",
        name == "durable" and "" or (">=%.1fx"):format(goal),
        (verdict == "-" and "" or verdict) }, "\t"), "\n")
    end
  end
end
LUA
