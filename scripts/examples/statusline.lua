#!/usr/bin/env procrun
--[[
statusline.lua: a Claude Code status line.

  Opus 4.6 (1M context) │ 47m 23s │ █░░░░░░░░░ 10% │ main* │ @security-reviewer

model, session age (from the first time this session was seen, tracked in
procmon's cache so every run sees it), context usage bar, git branch with a
* when the tree is dirty (cached 5 s per directory: a statusline runs on
every render), the agent name and vim mode when there are any.

Wire it into ~/.claude/settings.json:

  "statusLine": { "type": "command", "command": "procrun /path/to/statusline.lua",
                  "padding": 0 }

It always prints a line and exits 0 (on bad input: the session's last good
line, or a fallback, and one line on stderr). NO_COLOR=1 turns colours off;
the line is cut to $COLUMNS cells when Claude Code sets it.
]]
local pm = require "procmon"
local sl = require "procmon.statusline"

local GIT_TTL = 5         -- seconds a directory's git state is reused
local SESSION_TTL = 86400 -- a session is forgotten a day after its last render

-- The cache may be refused (a hostile state dir): the line still prints.
local cache = pm.cache.open()
local tracker = cache and pm.session.tracker{ cache = cache, ttl = SESSION_TTL }

--- Branch and dirty state of dir, or nil outside a repository.
local function git_state(dir)
  local function probe()
    local r = pm.run({ "git", "-C", dir, "status", "--porcelain=v2", "--branch",
      "--untracked-files=normal" }, { timeout = 2, stderr = "null" })
    if not r or not r.ok then return { repo = false } end
    local head = r.stdout:match("# branch%.head ([^\n]+)")
    if head == "(detached)" then
      head = (r.stdout:match("# branch%.oid (%x+)") or "detached"):sub(1, 7)
    end
    return { repo = true, branch = head, dirty = r.stdout:find("\n[^#]") ~= nil
      or r.stdout:find("^[^#]") ~= nil }
  end
  local st = cache and cache:remember("statusline:git:" .. dir, GIT_TTL, probe) or probe()
  return st.repo and st or nil
end

local function model_part(info)
  local name = info.model_name or info.model_id or "?"
  return sl.paint("bold cyan", sl.clean(name))
end

-- Claude Code's own session time when it sends one, else the time since
-- this session's first render (tracked across runs in the cache).
local function age_part(info)
  local rec = tracker and tracker:track(info._data)
  local seconds = rec and (pm.time() - rec.started_at)
  if info.duration_ms and info.duration_ms / 1000 > (seconds or 0) then
    seconds = info.duration_ms / 1000
  end
  return seconds and sl.paint("gray", sl.duration(seconds)) or nil
end

local function context_part(info)
  local pct = info.context_usage
  return sl.bar(pct, 10) .. " " .. sl.paint(sl.level(pct), sl.percent(pct))
end

local function git_part(info)
  local dir = info.cwd
  local st = dir and git_state(dir)
  if not st then return nil end
  local text = sl.clean(st.branch or "?") .. (st.dirty and "*" or "")
  return sl.paint(st.dirty and "yellow" or "green", text)
end

local function extras(info)
  local parts = {}
  if info.agent_name then parts[#parts + 1] = sl.paint("magenta", "@" .. sl.clean(info.agent_name)) end
  if info.vim_mode then parts[#parts + 1] = sl.paint("blue", sl.clean(info.vim_mode)) end
  return #parts > 0 and table.concat(parts, " ") or nil
end

local columns = math.tointeger(tonumber(os.getenv("COLUMNS") or ""))

sl.run(function(data, info)
  info._data = data
  return sl.join({ model_part(info), age_part(info), context_part(info), git_part(info),
    extras(info), n = 5 }, sl.paint("gray", " │ "))
end, { cache = cache or nil, width = columns and columns > 0 and columns or nil })
