-- Writes bench/RESULTS.md from a bench/run directory: rows.tsv (one row per
-- figure, written by each harness's summary), meta.txt and each harness's
-- output. usage: lua5.4 bench/report.lua bench/out/run > bench/RESULTS.md
local dir = arg[1]

local function read(name)
  local f = io.open(dir .. "/" .. name)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The workload each row belongs to, from its benchmark name.
local workloads = {
  { "^statusline", "W1 statusline cold start" },
  { "^spawn%+wait /bin/true x", "W2 spawn" },
  { "^capture", "W3 capture" },
  { "^seq ", "W4 lines" },
  { "^cache ", "W5 cache" },
  { "^cold start", "cold start" },
  { "^idle max RSS", "idle RSS" },
  { "^ps ", "ps over 10,000 records" },
  { "monitored sleep children", "1,000 monitored children" },
  { "time to start", "1,000 monitored children" },
  { "mon:run vs pm.run", "monitor spawn" },
}
local function workload(name)
  for _, w in ipairs(workloads) do
    if name:find(w[1]) then return w[2] end
  end
  return ""
end

local meta, times = {}, {}
for line in (read("meta.txt") or ""):gmatch("[^\n]+") do
  local k, v = line:match("^(%S+) (.*)$")
  if k == "statusline" or k == "processes" or k == "cache" or k == "monitor" then
    times[#times + 1] = ("%s %s s"):format(k, v)
  elseif k then
    meta[k] = v
  end
end

local rows, misses = {}, {}
for line in (read("rows.tsv") or ""):gmatch("[^\n]+") do
  local f = {}
  for c in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = c end
  rows[#rows + 1] = f
  if f[9] == "MISS" then misses[#misses + 1] = workload(f[1]) .. ": " .. f[1] .. ", " .. f[2] end
end

local out = {}
local function p(s) out[#out + 1] = s or "" end
p("# Benchmark results")
p()
p("Written by `bench/run` (do not edit by hand; notes and past profiles are in")
p("[NOTES.md](NOTES.md)). Every ratio compares a figure with its floor measured in the same")
p("run, round by round (the median of the per-round ratios; \"range\" is their spread).")
p("Throughput ratios are floor time / subject time (higher is better); start-up and memory")
p("ratios are subject / floor (lower is better). The \"cpu\" column, where given, is the same")
p("ratio on user + system CPU time, which other load on the machine disturbs less.")
p()
p(("- commit: `%s`, %s"):format(meta.commit or "?", meta.date or "?"))
p(("- machine: %s; rounds: %s per harness"):format(meta.machine or "?", meta.rounds or "?"))
if #times > 0 then p("- time per harness: " .. table.concat(times, ", ")) end
p(("- goals missed: %s"):format(#misses == 0 and "none" or #misses))
local bun = false
for _, f in ipairs(rows) do bun = bun or f[2] == "Bun / procrun" end
if not bun then
  p("- not measured: W1's Bun comparison (at least 10x faster than Bun): no `bun` here")
end
p()
p("| workload | benchmark | subject | figure | floor (same run) | ratio | range | cpu | goal | |")
p("|---|---|---|---|---|---|---|---|---|---|")
local last
for _, f in ipairs(rows) do
  local w = workload(f[1])
  local bench = f[1]
  if w == last then w = "" else last = w end
  p(("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"):format(w, bench, f[2] or "",
    f[3] or "", f[4] or "", f[5] or "", f[6] or "", f[7] or "", f[8] or "",
    f[9] == "MISS" and "**MISS**" or f[9] or ""))
end
if #misses > 0 then
  p()
  p("Missed:")
  for _, m in ipairs(misses) do p("- " .. m) end
end
for _, h in ipairs { { "statusline", "W1: bench/statusline.sh" },
  { "processes", "W2-W4, cold start, idle RSS: bench/run.sh" },
  { "cache", "W5: bench/cache.sh" }, { "monitor", "ps and the monitor: bench/monitor.sh" } } do
  local s = read(h[1] .. ".txt")
  if s then
    p()
    p("## " .. h[2])
    p()
    p("```")
    p((s:gsub("[^\n]*\r", ""):gsub("round %d+/%d+\n", ""):gsub("\n$", "")))
    p("```")
  end
end
io.write(table.concat(out, "\n"), "\n")
