-- procrun's subcommands (ps, kill, logs, gc): answers on stdout, errors on
-- stderr, the exit code returned to the host.
local M = {}

local function fail(name, msg)
  io.stderr:write("procrun ", name, ": ", msg, "\n")
  return 1
end

local commands = {}

-- {=== arguments ===}

--- Parses args against `spec` ({ ["--all"] = "flag", ["-n"] = "value" }):
--- the options found and the positional arguments, or nil, message.
local function parse(args, spec)
  local opts, pos, i = {}, {}, 1
  while i <= #args do
    local a = args[i]
    local kind = spec[a]
    if kind == "flag" then
      opts[a] = true
    elseif kind == "value" then
      if args[i + 1] == nil then return nil, "option " .. a .. " needs a value" end
      opts[a] = args[i + 1]
      i = i + 1
    elseif a == "--" then
      table.move(args, i + 1, #args, #pos + 1, pos)
      break
    elseif a:match("^%-%-?%a") then
      return nil, "unknown option '" .. a .. "'"
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

local function open_monitor(opts)
  local monitor = require "procmon.monitor"
  return monitor.new { dir = opts["--dir"] }
end

--- The record whose id is `id` or starts with it (unique), or nil, message.
local function find_record(mon, id)
  if not id:match("^[%w_-]+$") then return nil, "no record '" .. id .. "'" end
  local rec = mon:get(id)
  if rec then return rec end
  local found = {}
  for _, where in ipairs { "running", "done" } do
    for _, other in ipairs(mon._d:ids(where) or {}) do
      if other:sub(1, #id) == id then found[other] = true end
    end
  end
  local list = {}
  for k in pairs(found) do list[#list + 1] = k end
  table.sort(list)
  if #list == 1 then
    rec = mon:get(list[1])
    if rec then return rec end
  elseif #list > 1 then
    return nil, ("'%s' is ambiguous: %s"):format(id, table.concat(list, ", "))
  end
  return nil, "no record '" .. id .. "'"
end

-- }===

-- {=== ps ===}

local COLORS = { running = "32", completed = "2", failed = "31", killed = "33",
  timed_out = "33", lost = "35" }

--- "12s", "4m05s", "3h04m", "2d03h".
local function human(s)
  s = math.max(0, math.floor(s))
  if s < 60 then return s .. "s" end
  if s < 3600 then return ("%dm%02ds"):format(s // 60, s % 60) end
  if s < 86400 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
  return ("%dd%02dh"):format(s // 86400, s % 86400 // 3600)
end
M._human = human

--- An argv as a shell would read it back.
local function command_line(cmd)
  if type(cmd) ~= "table" then return tostring(cmd or "") end
  local parts = {}
  for i, a in ipairs(cmd) do
    a = tostring(a)
    if a == "" or a:find("[^%w%-_./:=@%%+,]") then a = "'" .. a:gsub("'", "'\\''") .. "'" end
    parts[i] = a
  end
  return table.concat(parts, " ")
end
M._command_line = command_line

--- s cut to n terminal cells with an ellipsis (wide characters count 2),
--- and the cells it takes.
local function fit(s, n)
  local sl = require "procmon.statusline"
  local w = sl.width(s)
  if w <= n then return s, w end
  if n <= 0 then return "", 0 end
  s = sl.truncate(s, n)
  return s, sl.width(s)
end

--- A row of the table: text from records, made safe for a terminal (no
--- control characters, valid UTF-8).
local function row_of(rec, now)
  local clean = require("procmon.statusline").clean
  local t = rec.status == "running" and now - (rec.started_at or now)
    or (rec.ended_at or now) - (rec.started_at or now)
  return { clean(rec.id or "?"), rec.pid and tostring(rec.pid) or "-", clean(rec.name or "-"),
    clean(rec.status or "?"), human(t), tostring(rec.restarts or 0), clean(command_line(rec.cmd)) }
end

-- A narrow terminal loses columns in this order; ID, STATUS and at least
-- MIN_COMMAND characters of the COMMAND always stay.
local DROP = { 6, 2, 5, 3 }     -- RESTARTS, PID, AGE/DURATION, NAME
local MIN_NAME, MIN_COMMAND = 4, 8

--- Which of the first six columns show, NAME's width, and the COMMAND's
--- room, for `width` characters (nil: no limit).
local function layout(w, width)
  local shown = { true, true, true, true, true, true }
  local function others()     -- every shown column but NAME, with gaps
    local u = 0
    for c = 1, 6 do if shown[c] and c ~= 3 then u = u + w[c] + 2 end end
    return u
  end
  if not width then return shown, math.huge end
  for _, c in ipairs(DROP) do
    if others() + MIN_NAME + 2 + MIN_COMMAND <= width then break end
    shown[c] = false
  end
  if shown[3] then w[3] = math.min(w[3], width - others() - 2 - MIN_COMMAND) end
  return shown, math.max(width - others() - (shown[3] and w[3] + 2 or 0), MIN_COMMAND)
end

--- The table: columns sized to their content, NAME at most 24 wide, the
--- COMMAND cut to what is left of `width` (nil: no limit). Below the
--- narrowest layout, lines are cut at `width` and not coloured.
local function render(rows, all, width, color)
  local head = { "ID", "PID", "NAME", "STATUS", all and "DURATION" or "AGE", "RESTARTS", "COMMAND" }
  local cells = require("procmon.statusline").width
  local w = {}
  for c = 1, 6 do
    w[c] = #head[c]
    for _, r in ipairs(rows) do w[c] = math.max(w[c], cells(r[c])) end
  end
  w[3] = math.min(w[3], 24)
  local shown, room = layout(w, width)
  local cut = width and w[1] + w[4] + 4 + MIN_COMMAND > width
  color = color and not cut
  local out = {}
  local function line(r, is_head)
    local cells = {}
    for c = 1, 6 do
      if shown[c] then
        local s, n = fit(r[c], w[c])
        local pad = (" "):rep(w[c] - n)
        if color and c == 4 and not is_head and COLORS[r[4]] then
          s = "\27[" .. COLORS[r[4]] .. "m" .. s .. "\27[0m"
        end
        cells[#cells + 1] = (c == 2 or c == 5 or c == 6) and pad .. s or s .. pad
      end
    end
    cells[#cells + 1] = fit(r[7], room)
    local l = table.concat(cells, "  "):gsub("%s+$", "")
    if cut then l = fit(l, width) end
    if color and is_head then l = "\27[1m" .. l .. "\27[0m" end
    out[#out + 1] = l
  end
  line(head, true)
  for _, r in ipairs(rows) do line(r) end
  return table.concat(out, "\n") .. "\n"
end
M._render = render

local function use_color(is_tty)
  local nc = os.getenv("NO_COLOR")
  return is_tty and (nc == nil or nc == "") and os.getenv("TERM") ~= "dumb"
end

--- procrun ps [--all] [--json] [--dir DIR]
function commands.ps(args)
  local opts, pos = parse(args, { ["--all"] = "flag", ["-a"] = "flag", ["--json"] = "flag",
    ["--dir"] = "value" })
  if not opts then return fail("ps", pos) end
  if #pos > 0 then return fail("ps", "unexpected argument '" .. pos[1] .. "'") end
  local all = opts["--all"] or opts["-a"]
  local mon, msg = open_monitor(opts)
  if not mon then return fail("ps", msg) end
  if opts["--json"] then
    local fast, fmsg = mon._d:print_json(all)   -- every record as stored
    if fast then return 0 end
    if fmsg then return fail("ps", fmsg) end
    local recs, texts = mon:_scan(all, true)  -- some need rewriting (lost)
    if not recs then return fail("ps", texts) end
    local keep = {}
    for i = 1, #texts do
      if all or not recs[i] or recs[i].status == "running" then keep[#keep + 1] = texts[i] end
    end
    io.stdout:write(#keep == 0 and "[]\n" or "[\n" .. table.concat(keep, ",\n") .. "\n]\n")
    return 0
  end
  local recs, err = (all and mon.history or mon.active)(mon)
  if not recs then return fail("ps", err) end
  local now, rows = require("procmon").time(), {}
  for i, rec in ipairs(recs) do rows[i] = row_of(rec, now) end
  local is_tty, width = require("procmon.mondir").tty(1)
  local cols = math.tointeger(tonumber(os.getenv("COLUMNS") or ""))
  width = cols and cols > 0 and cols or (is_tty and width or nil)
  io.stdout:write(render(rows, all, width, use_color(is_tty)))
  return 0
end

-- }===

-- {=== kill ===}

local ENDING = { TERM = true, KILL = true, INT = true, HUP = true, QUIT = true,
  [15] = true, [9] = true, [2] = true, [1] = true, [3] = true }

--- "TERM", "SIGTERM", "-TERM", "9", "-9" -> the signal for mondir.kill.
local function parse_signal(s)
  if s == nil then return "TERM" end
  s = s:gsub("^%-", "")
  if s:match("^%d+$") then return tonumber(s) end
  return (s:upper():gsub("^SIG", ""))
end

--- Waits (up to `secs`) for the process of rec to be gone.
local function gone_within(rec, secs)
  local pm, md = require "procmon", require "procmon.mondir"
  local deadline = pm.time() + secs
  while md.alive(rec.pid, rec.start_time or 0) do
    if pm.time() > deadline then return false end
    pm.sleep(0.02)
  end
  return true
end

--- The owner is gone (a detached job): nobody else will record the end.
--- Once the process is gone, reading the record records it (killed: the
--- .stop marker says why).
local function record_kill(mon, rec)
  local md = require "procmon.mondir"
  if rec.owner_pid and md.alive(rec.owner_pid, rec.owner_start_time or 0) then return end
  if gone_within(rec, 3) then mon:get(rec.id) end
end

--- procrun kill ID [SIGNAL] [--dir DIR]: signals the record's process
--- group after checking pid and start time.
function commands.kill(args)
  local opts, pos = parse(args, { ["--dir"] = "value" })
  if not opts then return fail("kill", pos) end
  if #pos < 1 or #pos > 2 then return fail("kill", "usage: procrun kill ID [SIGNAL]") end
  local mon, msg = open_monitor(opts)
  if not mon then return fail("kill", msg) end
  local rec, err = find_record(mon, pos[1])
  if not rec then return fail("kill", err) end
  if rec.status ~= "running" then
    return fail("kill", ("%s is not running (%s)"):format(rec.id, rec.status))
  end
  local sig = parse_signal(pos[2])
  local ending = ENDING[sig]
  -- the marker: do not restart, and why ("killed SIGTERM": the signal is
  -- recorded if nobody else records the end)
  local why = type(sig) == "string" and "killed SIG" .. sig or "killed"
  if ending then mon._d:write("running", rec.id, why, nil, ".stop") end
  if not rec.pid then
    if not ending then return fail("kill", rec.id .. " has no process now (waiting to restart)") end
    io.stdout:write(("stopped %s (it was waiting to restart)\n"):format(rec.id))
    return 0
  end
  local md = require "procmon.mondir"
  local ok, res, kmsg, code = pcall(md.kill, rec.pid, rec.start_time or 0, rec.pgid or rec.pid, sig)
  if not ok then return fail("kill", "unknown signal '" .. tostring(pos[2]) .. "'") end
  if res ~= true then
    if ending then mon._d:remove("running", rec.id, ".stop") end
    if code == "ESRCH" then
      mon:get(rec.id)   -- records it lost if nobody will record its end
      return fail("kill", ("%s is not running (its process is gone)"):format(rec.id))
    end
    return fail("kill", kmsg)
  end
  io.stdout:write(("sent %s to %s (pid %d and its group)\n"):format(
    type(sig) == "number" and tostring(sig) or "SIG" .. sig, rec.id, rec.pid))
  if ending then record_kill(mon, rec) end
  return 0
end

-- }===

-- {=== logs ===}

--- The last `n` lines of the open file f (fewer if it has fewer; none if
--- f is nil) and how many were found; f is left at its end.
local function last_lines(f, n)
  if not f then return "", 0 end
  local size = f:seek("end")
  local pos, buf, count = size, "", 0
  while pos > 0 do
    local step = math.min(65536, pos)
    pos = pos - step
    f:seek("set", pos)
    buf = f:read(step) .. buf
    local _, nl = buf:gsub("\n", "")
    if buf:sub(-1) ~= "\n" and #buf > 0 then nl = nl + 1 end
    if nl > n then break end
  end
  f:seek("set", size)
  local lines = {}
  for l in buf:gmatch("[^\n]*\n?") do if l ~= "" then lines[#lines + 1] = l end end
  count = math.min(n, #lines)
  return table.concat(lines, "", #lines - count + 1), count
end

--- Prints the open file f (if any) from where it is to its end.
local function print_rest(f)
  while f do
    local s = f:read(65536)
    if not s then break end
    io.stdout:write(s)
  end
end

--- The log at path opened, and its file id, both of the same file: a
--- rotation between the two is seen, and the open is tried again.
local function open_log(path)
  local md = require "procmon.mondir"
  while true do
    local id = md.file_id(path)
    local f = io.open(path, "rb")
    if md.file_id(path) == id then return f, id end
    if f then f:close() end
  end
end

--- Follows the log at path, open as f with file id fid (printed up to where
--- f is), until the job of `id` is no longer running; the log may be
--- rotated meanwhile (then the rest of the old file comes first).
local function follow(mon, id, path, f, fid)
  local pm, md = require "procmon", require "procmon.mondir"
  while true do
    local chunk = f and f:read("a")
    if chunk and #chunk > 0 then io.stdout:write(chunk); io.stdout:flush() end
    local now_id = md.file_id(path)
    if now_id ~= fid then        -- rotated (or created): drain, then reopen
      if f then
        chunk = f:read("a")
        if chunk and #chunk > 0 then io.stdout:write(chunk) end
        f:close()
      end
      f, fid = io.open(path, "rb"), now_id
    else
      local rec = mon:get(id)
      if not rec or rec.status ~= "running" then
        chunk = f and f:read("a")
        if chunk and #chunk > 0 then io.stdout:write(chunk) end
        return 0
      end
      pm.sleep(0.1)
    end
  end
end

--- procrun logs ID [-f] [-n N] [--dir DIR]
function commands.logs(args)
  local opts, pos = parse(args, { ["-f"] = "flag", ["--follow"] = "flag", ["-n"] = "value",
    ["--dir"] = "value" })
  if not opts then return fail("logs", pos) end
  if #pos ~= 1 then return fail("logs", "usage: procrun logs ID [-f] [-n N]") end
  local n = opts["-n"] and tonumber(opts["-n"])
  if opts["-n"] and (not n or n < 0 or n % 1 ~= 0) then
    return fail("logs", "-n needs a non-negative whole number")
  end
  local mon, msg = open_monitor(opts)
  if not mon then return fail("logs", msg) end
  local rec, err = find_record(mon, pos[1])
  if not rec then return fail("logs", err) end
  if not rec.log then return fail("logs", rec.id .. " has no log (spawn it with log = true)") end
  -- The current file is opened first and followed from where its printing
  -- ended: nothing written meanwhile is lost. If it was rotated since, it is
  -- the ".1" now (and the older one is gone): then it is printed once.
  local f, fid = open_log(rec.log)
  local old = require("procmon.mondir").file_id(rec.log .. ".1") ~= fid
    and io.open(rec.log .. ".1", "rb")
  if n then
    local cur, got = last_lines(f, n)
    io.stdout:write(got < n and last_lines(old, n - got) or "", cur)
  else
    print_rest(old)
    print_rest(f)
  end
  if old then old:close() end
  io.stdout:flush()
  if opts["-f"] or opts["--follow"] then return follow(mon, rec.id, rec.log, f, fid) end
  if f then f:close() end
  return 0
end

-- }===

-- {=== gc ===}

--- procrun gc: removes expired and corrupt cache entries and stale
--- temporary files from the default cache, and expired monitor records
--- with their logs.
function commands.gc(args)
  if #args > 0 then return fail("gc", "no arguments expected") end
  local pm = require "procmon"
  local cache, msg = pm.cache.open()
  if not cache then return fail("gc", msg) end
  local n, pmsg = cache:purge()
  cache:close()
  if not n then return fail("gc", pmsg) end
  io.stdout:write(("removed %d file%s from %s\n"):format(n, n == 1 and "" or "s", cache.dir))
  local mon, mmsg = open_monitor({})
  if not mon then return fail("gc", mmsg) end
  local r, rmsg = mon:purge()
  if not r then return fail("gc", rmsg) end
  io.stdout:write(("removed %d record%s from %s\n"):format(r, r == 1 and "" or "s", mon.dir))
  return 0
end

-- }===

M.commands = commands

--- Runs subcommand `name` with the remaining arguments; returns its exit code.
--- `procrun NAME --help` (or -h) is `procrun help NAME`.
function M.main(name, ...)
  local first = ...
  if (first == "--help" or first == "-h") and name ~= "help" then return commands.help({ name }) end
  return commands[name]({ ... })
end

-- {=== help ===}

--- Each subcommand's usage, for `procrun help NAME` (the overview is the
--- host's `procrun --help`). The man page, procrun(1), says the same at length.
M.usage = {
  ps = [[
usage: procrun ps [--all] [--json] [--dir DIR]
List the monitored processes of the monitor directory (every process that
uses it): the running ones, newest first.
  -a, --all   also the finished records that have not expired
  --json      a JSON array of records, for scripts
  --dir DIR   another monitor directory (default: <state dir>/monitor)]],
  kill = [[
usage: procrun kill ID [SIGNAL] [--dir DIR]
Signal the process group of the monitored process ID (or the one whose id
starts with ID). SIGNAL: a name (TERM, INT, KILL...) or a number; default
TERM. A signal that ends the process also ends its job (no restart).
  --dir DIR   another monitor directory]],
  logs = [[
usage: procrun logs ID [-f] [-n N] [--dir DIR]
Print the log of the monitored process ID (started with the log option).
  -f, --follow  keep printing as it grows, until the job ends
  -n N          only the last N lines
  --dir DIR     another monitor directory]],
  gc = [[
usage: procrun gc
Remove expired and corrupt cache entries, stale temporary files, and
expired monitor records with their logs, from the state directory.]],
  help = [[
usage: procrun help [SUBCOMMAND]
Print the usage of SUBCOMMAND (also: procrun SUBCOMMAND --help), or the
overview (procrun --help).]],
}

--- procrun help [NAME]: the usage of NAME on stdout.
function commands.help(args)
  if #args > 1 then return fail("help", "one subcommand expected") end
  local name = args[1]
  if name == nil then
    local names = {}
    for k in pairs(commands) do names[#names + 1] = k end
    table.sort(names)
    io.stdout:write("subcommands: ", table.concat(names, ", "),
                    "\nprocrun help SUBCOMMAND for one; procrun --help; man procrun\n")
    return 0
  end
  if not commands[name] or not M.usage[name] then
    return fail("help", "no subcommand '" .. tostring(name) .. "'")
  end
  io.stdout:write(M.usage[name], "\n")
  return 0
end

return M
