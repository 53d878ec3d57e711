#!/usr/bin/env procrun
--[[
guard-bash.lua: a Claude Code PreToolUse hook that denies dangerous Bash
commands with a reason, and stays out of the way for the rest.

Wire it into ~/.claude/settings.json (or .claude/settings.json):

  "hooks": {
    "PreToolUse": [{
      "matcher": "Bash",
      "hooks": [{ "type": "command", "command": "procrun",
                  "args": ["/path/to/guard-bash.lua"], "timeout": 5 }]
    }]
  }

Denied (permissionDecision "deny", the reason goes to Claude):
  rm -r -f of /, ~, $HOME, /* or a top-level system directory
  git push --force (-f, +refspec) to main or master
  mkfs, dd to a disk device, a write redirected to a disk device, a fork bomb
  chmod/chown -R on /
Asked (permissionDecision "ask", the user confirms):
  git push --force to another branch or an unnamed one
  curl/wget piped into a shell
Anything else: no output, exit 0, so Claude Code's own permission rules
decide (an explicit "allow" would skip the user's prompts).

Bad input or an internal error blocks the call (exit 2, on_error = "block"):
a guard that fails open is no guard.
]]
local pm = require "procmon"

-- {=== reading a shell command, roughly ===}

-- Splits a command line into simple commands (at ; & | && || newlines and
-- $( ), each a list of words with quotes removed. Not a shell parser: enough
-- to see "rm -rf /" behind "cd x && sudo rm -rf /".
local function commands(line)
  local out, words, word, quote = {}, {}, {}, nil
  local function end_word()
    if #word > 0 then words[#words + 1] = table.concat(word) end
    word = {}
  end
  local function end_command()
    end_word()
    if #words > 0 then out[#out + 1] = words end
    words = {}
  end
  local i, n = 1, #line
  while i <= n do
    local c = line:sub(i, i)
    if quote then
      if c == quote then quote = nil
      elseif c == "\\" and quote == '"' and i < n then i = i + 1; word[#word + 1] = line:sub(i, i)
      else word[#word + 1] = c end
    elseif c == "'" or c == '"' then quote = c
    elseif c == "\\" and i < n then i = i + 1; word[#word + 1] = line:sub(i, i)
    elseif c:find("[;&|\n()`]") then end_command()
    elseif c:find("%s") then end_word()
    elseif c == "$" and line:sub(i + 1, i + 1) == "(" then end_command(); i = i + 1
    else word[#word + 1] = c end
    i = i + 1
  end
  end_command()
  return out
end

-- The command's words without leading wrappers (sudo, env VAR=x, time...).
local wrappers = { sudo = true, doas = true, env = true, time = true, nice = true, nohup = true,
  command = true, exec = true, builtin = true }

local function strip(words)
  local i = 1
  while words[i] and (wrappers[words[i]] or words[i]:find("^%w+=") or
    (i > 1 and wrappers[words[i - 1]] and words[i]:find("^%-"))) do
    i = i + 1
  end
  return table.move(words, i, #words, 1, {})
end

local function basename(w) return (w:match("[^/]+$") or w) end

-- {=== the rules ===}

local system_dirs = { bin = 1, boot = 1, dev = 1, etc = 1, home = 1, lib = 1, lib64 = 1, opt = 1,
  proc = 1, root = 1, sbin = 1, srv = 1, sys = 1, usr = 1, var = 1, Users = 1, System = 1 }

local function catastrophic_target(t)
  t = t:gsub("/+$", "")
  if t == "" or t == "/*" or t == "~" or t == "~/*" or t == "$HOME" or t == "${HOME}"
    or t == "$HOME/*" then
    return true
  end
  local top = t:match("^/([^/]+)$")
  return top ~= nil and system_dirs[top] ~= nil
end

local function rm_rule(w)
  if basename(w[1]) ~= "rm" then return nil end
  local r, f, targets = false, false, {}
  for i = 2, #w do
    local a = w[i]
    if a == "--recursive" then r = true
    elseif a == "--force" then f = true
    elseif a == "--no-preserve-root" then r, f = true, true
    elseif a:find("^%-%a") then
      if a:find("[rR]") then r = true end
      if a:find("f") then f = true end
    else targets[#targets + 1] = a end
  end
  if not r then return nil end
  for _, t in ipairs(targets) do
    if catastrophic_target(t) then
      return "deny", ("'rm -r%s %s' would delete %s"):format(f and "f" or "", t,
        (t == "/" or t == "/*") and "the whole file system" or "a home or system directory")
    end
  end
end

local protected = { main = true, master = true }

local function push_rule(w)
  if basename(w[1]) ~= "git" then return nil end
  local i = 2
  while w[i] and w[i]:find("^%-") do i = i + ((w[i] == "-C" or w[i] == "-c") and 2 or 1) end
  if w[i] ~= "push" then return nil end
  local force, refs = false, {}
  for j = i + 1, #w do
    local a = w[j]
    if a == "--force" or a == "-f" or a:find("^%-%-force%-with%-lease") or a == "--mirror"
      or (a:find("^%-%a+$") and a:find("f")) then
      force = true
    elseif not a:find("^%-") then
      if a:sub(1, 1) == "+" then force = true end
      refs[#refs + 1] = a
    end
  end
  if not force then return nil end
  for k = 2, #refs do  -- refs[1] is the remote
    local dst = refs[k]:gsub("^%+", ""):match("([^:]+)$") or ""
    dst = dst:gsub("^refs/heads/", "")
    if protected[dst] then
      return "deny", ("force-push to %s rewrites shared history"):format(dst)
    end
  end
  return "ask", "git push --force rewrites remote history; confirm first"
end

local function disk_rule(w)
  local cmd = basename(w[1])
  if cmd:find("^mkfs") then return "deny", "mkfs formats a file system" end
  if cmd == "dd" then
    for i = 2, #w do
      if w[i]:find("^of=/dev/[sh]d") or w[i]:find("^of=/dev/nvme") or w[i]:find("^of=/dev/mmcblk") then
        return "deny", "dd onto a disk device destroys its data"
      end
    end
  end
  if (cmd == "chmod" or cmd == "chown") then
    local recursive, root = false, false
    for i = 2, #w do
      if w[i] == "-R" or w[i] == "--recursive" then recursive = true end
      if w[i] == "/" then root = true end
    end
    if recursive and root then return "deny", cmd .. " -R on / breaks the whole system" end
  end
end

-- Rules over the raw line (what splitting into commands would hide).
local function line_rules(line)
  if line:find(":%(%)%s*{%s*:%s*|%s*:%s*&%s*}%s*;%s*:") then
    return "deny", "a fork bomb"
  end
  if line:find(">%s*/dev/[sh]d%a") or line:find(">%s*/dev/nvme") then
    return "deny", "writing to a disk device destroys its data"
  end
  if line:find("curl[^|]*|%s*s?u?d?o?%s*b?a?sh") or line:find("wget[^|]*|%s*s?u?d?o?%s*b?a?sh") then
    return "ask", "piping a download into a shell runs unreviewed code"
  end
end

local rules = { rm_rule, push_rule, disk_rule }

--- The verdict on a command line: "deny" or "ask" with a reason, or nil.
local function check(line)
  local verdict, why = line_rules(line)
  if verdict == "deny" then return verdict, why end
  for _, words in ipairs(commands(line)) do
    local w = strip(words)
    if #w > 0 then
      for _, rule in ipairs(rules) do
        local v, reason = rule(w)
        if v == "deny" then return v, reason end
        if v and not verdict then verdict, why = v, reason end
      end
    end
  end
  return verdict, why
end

-- `procrun guard-bash.lua --check 'CMD'` prints the verdict (for trying rules).
if arg and arg[1] == "--check" then
  local v, why = check(arg[2] or "")
  print(v or "pass", why)
  return
end

pm.hook.run(function(ev)
  if ev.hook_event_name ~= "PreToolUse" or ev.tool_name ~= "Bash" then return nil end
  local input = type(ev.tool_input) == "table" and ev.tool_input or {}
  local line = input.command
  if type(line) ~= "string" then error("tool_input.command is not a string") end
  local verdict, why = check(line)
  if not verdict then return nil end
  return { decision = verdict, reason = "guard-bash: " .. why }
end, { on_error = "block", name = "guard-bash.lua" })
