-- Prints the table for bench/run.sh from its records file
-- ("key wall_seconds [rss_kib [cpu_seconds]]" per line).
--   median     median over the rounds
--   ratio      median of the per-round ratios (round i against round i's
--              floor, measured moments apart), so that slow drifts in the
--              machine's load cancel out; "range" is their min-max
--   cpu        the same ratio on CPU time (user + sys, children included),
--              less sensitive to other load on a shared machine
-- Throughput ratios are floor time / subject time (higher is better);
-- cold start and RSS ratios are subject / floor (lower is better).
-- usage: lua5.4 summary.lua records.txt
local rec = {}
for line in io.lines(arg[1]) do
  local key, sec, rss, cpu = line:match("^(%S+) (%S+) ?(%S*) ?(%S*)")
  if key then
    local r = rec[key] or { t = {}, m = {}, c = {} }
    rec[key] = r
    r.t[#r.t + 1] = tonumber(sec)
    if rss ~= "" then r.m[#r.m + 1] = tonumber(rss) end
    if cpu ~= "" then r.c[#r.c + 1] = tonumber(cpu) end
  end
end

local function median(xs)
  if #xs == 0 then return nil end
  local s = { table.unpack(xs) }
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

-- Per-round ratios f(subject_i, floor_i): median, min, max.
local function ratios(a, b, f)
  local xs = {}
  for i = 1, math.min(#a, #b) do
    if a[i] > 0 and b[i] > 0 then xs[#xs + 1] = f(a[i], b[i]) end
  end
  if #xs == 0 then return nil end
  return median(xs), math.min(table.unpack(xs)), math.max(table.unpack(xs))
end

local function x(v) return v and ("%.2fx"):format(v) or "-" end

local rows = {}
-- BENCH_ROWS=file (bench/run): each row is also appended there, tab-separated.
local export = os.getenv("BENCH_ROWS") and assert(io.open(os.getenv("BENCH_ROWS"), "a"))
local function row(name, subject, value, floor, ratio, lo, hi, cpu, goal, ok)
  rows[#rows + 1] = { name, subject, value, floor, x(ratio),
    lo and ("%.2f-%.2f"):format(lo, hi) or "", cpu and x(cpu) or "", goal or "",
    ok == nil and "" or ok and "ok" or "MISS" }
  if export then export:write(table.concat(rows[#rows], "\t"), "\n") end
end

local function faster(t, f) return f / t end
local function smaller(v, f) return v / f end

-- Throughput benchmarks.
local function throughput(bench, name, per_second, goal, subjects)
  local fl = rec[bench .. ".floor"]
  if not fl then return end
  local function fmt(t) return ("%.3fs %s"):format(t, per_second(t)) end
  for _, s in ipairs(subjects) do
    local r = rec[bench .. "." .. s[1]]
    if r then
      local q, lo, hi = ratios(r.t, fl.t, faster)
      local c = ratios(r.c, fl.c, faster)
      local g = s[2] and goal or nil
      local ok  -- nil: no goal on this row; not `g and q >= g or nil`,
      if g then ok = q >= g end  -- which turns a miss into nil
      row(name, s[3], fmt(median(r.t)), fmt(median(fl.t)), q, lo, hi, c,
        g and (">=%gx"):format(g), ok)
    end
  end
  return fl
end

local function si(v)
  if v >= 1e6 then return ("%.2fM"):format(v / 1e6) end
  if v >= 1e3 then return ("%.1fk"):format(v / 1e3) end
  return ("%.0f"):format(v)
end

local N_SPAWN = tonumber(os.getenv("SPAWN_N") or 1000)
local BYTES = tonumber(os.getenv("CAPTURE_BYTES") or 268435456)
local N_LINES = tonumber(os.getenv("LINES") or 2000000)

throughput("spawn", ("spawn+wait /bin/true x%d, 8 at once"):format(N_SPAWN),
  function(t) return si(N_SPAWN / t) .. "/s" end, 0.7, {
    { "procrun", true, "procrun run_all" },
    { "procrun_null", false, "procrun run_all, stdio null" },
    { "lua54", false, "lua5.4 + procmon.so" },
  })

local cfl = throughput("capture", ("capture %d MiB of stdout"):format(BYTES >> 20),
  function(t) return ("%.0f MB/s"):format(BYTES / t / 1e6) end, 0.8, {
    { "procrun", true, "procrun pm.run" },
    { "lua54", false, "lua5.4 + procmon.so" },
  })
if cfl and #cfl.m > 0 then
  for _, s in ipairs { { "procrun", true, "procrun pm.run" }, { "lua54", false, "lua5.4 + procmon.so" } } do
    local r = rec["capture." .. s[1]]
    if r and #r.m > 0 then
      -- No goal in DESIGN.md: the captured bytes exist twice until the
      -- buffer becomes the Result's string (see NOTES.md), so ~2x is this
      -- design's floor.
      local q, lo, hi = ratios(r.m, cfl.m, smaller)
      row("capture: peak RSS", s[3], ("%.1f MiB"):format(median(r.m) / 1024),
        ("%.1f MiB"):format(median(cfl.m) / 1024), q, lo, hi, nil, nil, nil)
    end
  end
end

throughput("lines", ("seq 1 %d, per-line callback"):format(N_LINES),
  function(t) return si(N_LINES / t) .. " lines/s" end, 0.35, {
    { "procrun", true, "procrun on_stdout lines" },
    { "procrun_gen", false, "procrun, generational GC" },
    { "lua54", false, "lua5.4 + procmon.so" },
    { "node", false, "node readline (ref)" },
  })

local sf = rec["start.floor"]
if sf then
  for _, s in ipairs {
    { "procrun", true, "procrun -e ''" },
    { "procrun_require", false, "procrun -e 'require\"procmon\"'" },
    { "lua54_require", false, "lua5.4 -e 'require\"procmon\"'" },
  } do
    local r = rec["start." .. s[1]]
    if r then
      local q, lo, hi = ratios(r.t, sf.t, smaller)
      local ok
      if s[2] then ok = q <= 1.5 end
      row("cold start vs lua5.4 -e ''", s[3], ("%.2f ms"):format(median(r.t) * 1e3),
        ("%.2f ms"):format(median(sf.t) * 1e3), q, lo, hi, nil,
        s[2] and "<=1.5x" or nil, ok)
    end
  end
end

local rl = rec["rss.lua54_bare"]
for _, s in ipairs {
  { "procrun_bare", "procrun -e ''" },
  { "procrun_require", "procrun -e 'require\"procmon\"'" },
  { "procrun_sleep", "procrun in pm.sleep(0.2)" },
} do
  local r = rec["rss." .. s[1]]
  if r then
    local m = median(r.m)
    local q, lo, hi
    if rl then q, lo, hi = ratios(r.m, rl.m, smaller) end
    row("idle max RSS vs lua5.4 -e ''", s[2], ("%.2f MiB"):format(m / 1024),
      rl and ("%.2f MiB"):format(median(rl.m) / 1024) or "-", q, lo, hi, nil,
      "<4 MiB", m < 4096)
  end
end

local head = { "benchmark", "subject", "median", "floor (same run)", "ratio", "range", "cpu", "goal", "" }
local w = {}
for _, r in ipairs { head, table.unpack(rows) } do
  for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, #c) end
end
local function line(r)
  local out = {}
  for i, c in ipairs(r) do out[i] = c .. (" "):rep(w[i] - #c) end
  print((table.concat(out, "  "):gsub("%s+$", "")))
end
line(head)
for _, r in ipairs(rows) do line(r) end
local any = rec["spawn.floor"] or rec["capture.floor"] or rec["lines.floor"] or rec["start.floor"]
print(("rounds: %d; ratio = median of per-round ratios; throughput ratios are floor/subject,"
  .. " start and RSS ratios subject/floor"):format(any and #any.t or 0))
