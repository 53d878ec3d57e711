--- procmon.hook: Claude Code hook commands.
---
---   local ev = assert(pm.hook.read())                 -- the event on stdin
---   pm.hook.respond{ decision = "deny", reason = "..." }  -- JSON, exit 0
---   pm.hook.block("reason")                           -- stderr, exit 2
---
---   pm.hook.run(function(ev) ... return { decision = "allow" } end)
---
--- Exit codes as Claude Code reads them: 0 with one JSON object on stdout
--- (respond), 2 to block with the reason on stderr (block), anything else a
--- non-blocking error (the action goes ahead; exit 1 never blocks).

local pm = require "procmon"
local json = require "procmon.json"
local session = require "procmon.session"

local M = {}

--- The event read last by hook.read (respond's default event).
M.event = nil

--- Claude Code caps strings in hook output at 10,000 characters.
M.max_string = 10000

-- {=== reading ===}

--- Reads the hook event from stdin, as session.read (same options), and
--- also requires a hook_event_name. nil, err (one line) when unusable.
---@param opts? {timeout?: number, max_bytes?: integer, input?: string, fd?: integer}
---@return table|nil event, string|nil err, string|nil code
function M.read(opts)
  opts = session._check_read_opts(opts, "read")
  local raw, how, code = session._read_raw(opts)
  if not raw then
    if code ~= "EFBIG" and code ~= "ECANCELED" then how = "stdin: " .. how end
    return nil, how, code
  end
  local ev, err = session._parse(raw, how, opts.timeout or session.default_timeout)
  if not ev then return nil, err end
  local name = ev.hook_event_name
  if type(name) ~= "string" or not name:find("^%a+$") then
    return nil, "stdin: no usable hook_event_name (not a hook event)"
  end
  M.event = ev
  return ev
end

-- {=== the answer ===}

-- What each event accepts (Claude Code's hook JSON output). Events not
-- listed get the common fields plus additionalContext.
local decisions = {
  PreToolUse = { allow = true, deny = true, ask = true, defer = true },
  PermissionRequest = { allow = true, deny = true },
}
local block_events = {
  UserPromptSubmit = true, PostToolUse = true, PostToolUseFailure = true,
  PostToolBatch = true, Stop = true, SubagentStop = true, ConfigChange = true,
  PreCompact = true, TaskCreated = true,
}
local no_context = {
  PermissionRequest = true, SessionEnd = true, Notification = true, PreCompact = true,
  StopFailure = true,
}
local title_events = { SessionStart = true, UserPromptSubmit = true }

local fields = {
  event = "string", decision = "string", reason = "string", context = "string",
  title = "string", updated_input = "table", permissions = "table", continue = "boolean",
  stop_reason = "string", system_message = "string", suppress_output = "boolean",
}

local function misuse(msg) error(msg, 0) end

-- Invalid UTF-8 (a file name's bytes, say) replaced by U+FFFD: Claude
-- Code parses the answer as JSON, which must be UTF-8.
local function valid_utf8(s)
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local n, bad = utf8.len(s, i)
    if n then out[#out + 1] = s:sub(i); break end
    out[#out + 1] = s:sub(i, bad - 1) .. "\u{FFFD}"
    i = bad + 1
    while i <= #s and s:byte(i) & 0xC0 == 0x80 do i = i + 1 end
  end
  return table.concat(out)
end

-- Claude Code's cap, cut on a UTF-8 character boundary.
local function cap(s)
  s = valid_utf8(s)
  if #s <= M.max_string then return s end
  local cut = M.max_string - 3
  while cut > 0 and (s:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
  return s:sub(1, cut) .. "…"
end

local function check_fields(t)
  for k, v in pairs(t) do
    local want = fields[k]
    if not want then misuse("unknown field '" .. tostring(k) .. "'") end
    if type(v) ~= want then misuse(("field '%s': %s expected, got %s"):format(k, want, type(v))) end
  end
end

local function event_of(t)
  local ev = t.event or (M.event and M.event.hook_event_name)
  if ev == nil then
    misuse("no event: pass event = \"PreToolUse\" (or call hook.read first)")
  end
  return ev
end

local function set_decision(out, spec, ev, t)
  local d = t.decision
  if d == nil then return end
  if decisions[ev] then
    if not decisions[ev][d] then
      misuse(("decision '%s' is not one %s accepts"):format(d, ev))
    end
    if ev == "PreToolUse" then
      spec.permissionDecision = d
      spec.permissionDecisionReason = t.reason and cap(t.reason)
    else
      spec.decision = { behavior = d, message = d == "deny" and t.reason and cap(t.reason) or nil }
    end
  elseif block_events[ev] then
    if d ~= "block" then misuse(("decision '%s' is not one %s accepts (only 'block')"):format(d, ev)) end
    if not t.reason then misuse("decision 'block' needs a reason") end
    out.decision, out.reason = "block", cap(t.reason)
  else
    misuse(ev .. " takes no decision (use continue = false to stop Claude)")
  end
end

local function set_specific(spec, ev, t)
  if t.context then
    if no_context[ev] then misuse(ev .. " takes no additional context") end
    spec.additionalContext = cap(t.context)
  end
  if t.title then
    if not title_events[ev] then misuse(ev .. " takes no session title") end
    spec.sessionTitle = cap(t.title)
  end
  if t.updated_input then
    if ev == "PreToolUse" then spec.updatedInput = t.updated_input
    elseif ev == "PermissionRequest" and spec.decision and spec.decision.behavior == "allow" then
      spec.decision.updatedInput = t.updated_input
    else misuse("updated_input needs PreToolUse, or PermissionRequest with decision 'allow'") end
  end
  if t.permissions then
    if not (ev == "PermissionRequest" and spec.decision) then
      misuse("permissions needs PermissionRequest with a decision")
    end
    spec.decision.updatedPermissions = t.permissions
  end
end

--- The JSON object (as a Lua table) that answers the event: fields
---   event           the event name; default: the one hook.read returned
---   decision        PreToolUse: "allow", "deny", "ask", "defer";
---                   PermissionRequest: "allow", "deny";
---                   UserPromptSubmit, PostToolUse, Stop, SubagentStop,
---                   PreCompact...: "block" (with a reason)
---   reason          shown for the decision (for Stop: what to do next)
---   context         additionalContext: text for Claude
---   title           sessionTitle (SessionStart, UserPromptSubmit)
---   updated_input   PreToolUse (or an allowed PermissionRequest): the
---                   replacement tool_input
---   permissions     PermissionRequest: updatedPermissions
---   continue, stop_reason, system_message, suppress_output: as Claude
---                   Code's continue, stopReason, systemMessage,
---                   suppressOutput (every event)
--- Raises on a field the event does not take. Strings are cut at 10,000
--- characters (Claude Code's cap).
---@param t table
---@return table
function M.output(t)
  if type(t) ~= "table" then error("bad argument #1 to 'output' (table expected, got " .. type(t) .. ")", 2) end
  local ok, out = pcall(function()
    check_fields(t)
    local ev = event_of(t)
    local out, spec = {}, {}
    set_decision(out, spec, ev, t)
    if t.reason and t.decision == nil then misuse("reason needs a decision") end
    set_specific(spec, ev, t)
    if next(spec) then
      spec.hookEventName = ev
      out.hookSpecificOutput = spec
    end
    if t.continue ~= nil then out.continue = t.continue end
    if t.stop_reason then out.stopReason = cap(t.stop_reason) end
    if t.system_message then out.systemMessage = cap(t.system_message) end
    if t.suppress_output ~= nil then out.suppressOutput = t.suppress_output end
    return out
  end)
  if not ok then error("bad argument #1 to 'output' (" .. tostring(out) .. ")", 2) end
  return out
end

local function exit(code)
  io.stdout:flush()
  io.stderr:flush()
  os.exit(code, true)  -- close the state: finalizers run (caches, monitor records)
end

--- Prints the answer (M.output's object) as one line of JSON on stdout and
--- exits 0. Raises, printing nothing, on misuse.
---@param t table
function M.respond(t)
  local ok, out = pcall(M.output, t)
  if not ok then error((tostring(out):gsub("'output'", "'respond'")), 2) end
  io.stdout:write(json.encode(out), "\n")
  exit(0)
end

--- Blocks the action (on events that can block): the reason on stderr,
--- exit 2. Claude Code shows the reason to Claude.
---@param reason string
function M.block(reason)
  if type(reason) ~= "string" then
    error("bad argument #1 to 'block' (string expected, got " .. type(reason) .. ")", 2)
  end
  io.stderr:write((cap(reason):gsub("\n*$", "")), "\n")
  exit(2)
end

-- {=== a whole hook ===}

local function script_name()
  local a = rawget(_G, "arg")
  local s = type(a) == "table" and type(a[0]) == "string" and a[0]:match("[^/]+$")
  return s or "hook"
end

--- Whether an error comes from a stop signal (SIGINT/SIGTERM/SIGHUP to
--- procrun), which a hook must not swallow.
local function interrupted(err)
  local f = pm.interrupted
  if f and f() then return true end
  return type(err) == "string" and err:find("interrupted by signal %d+") ~= nil
end
M._interrupted = interrupted

-- First line of an error, without its traceback.
local function one_line(err)
  return (tostring(err):match("^[^\n]*"))
end
M._one_line = one_line

local run_options = { timeout = true, max_bytes = true, input = true, fd = true,
  name = true, on_error = true }

--- Runs a hook: reads the event, calls fn(event), and answers with what
--- fn returns (a table for respond, or nil for no output: exit 0). Bad
--- input or an error in fn: one line on stderr ("<script>: <message>",
--- never a traceback on stdout) and exit 1, a non-blocking error; with
--- on_error = "block", exit 2 instead (fail closed, for guards). A stop
--- signal is never swallowed. Options: those of read, name (for messages,
--- default the script's file name), on_error ("continue" or "block").
---@param fn fun(event: table): table|nil
---@param opts? table
function M.run(fn, opts)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'run' (function expected, got " .. type(fn) .. ")", 2)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not run_options[k] then error("bad argument #2 to 'run' (unknown option '" .. tostring(k) .. "')", 2) end
  end
  local on_error = opts.on_error or "continue"
  if on_error ~= "continue" and on_error ~= "block" then
    error("bad argument #2 to 'run' (option 'on_error': \"continue\" or \"block\" expected)", 2)
  end
  local name = opts.name or script_name()
  local function fail(msg)
    io.stderr:write(name, ": ", one_line(msg), "\n")
    exit(on_error == "block" and 2 or 1)
  end
  local ev, err = M.read{ timeout = opts.timeout, max_bytes = opts.max_bytes,
    input = opts.input, fd = opts.fd }
  if not ev then fail(err) end
  local ok, res = pcall(fn, ev)
  if not ok then
    if interrupted(res) then error(res, 0) end
    fail(res)
  end
  if res == nil then exit(0) end
  local okr, out = pcall(M.output, res)
  if not okr then fail(out) end
  io.stdout:write(json.encode(out), "\n")
  exit(0)
end

return M
