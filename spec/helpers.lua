-- Shared spec helpers: the interpreter running the suite, fixture
-- commands, /proc probes, and the after_each check that nothing leaks.
local pm = require "procmon"
local assert = require "luassert"

local H = {}

H.lua = assert(os.getenv("PM_LUA"), "run the specs through spec/run")
H.build = assert(os.getenv("PM_BUILD_DIR"))
H.procrun = H.build .. "/procrun"
H.root = os.getenv("PWD")

--- A stock lua5.4 that can load procmon.so (under `make test-asan`, a
--- wrapper that preloads the sanitizer runtimes).
H.lua54 = os.getenv("PM_LUA54") or "lua5.4"

--- Absolute path of spec/fixtures/<name>.lua.
--- A string quoted for sh.
function H.q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- Runs a shell command: its output (stderr included) and exit code.
function H.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

function H.fixture(name) return H.root .. "/spec/fixtures/" .. name .. ".lua" end

--- argv running a fixture with the interpreter running the suite.
function H.cmd(name, ...) return { H.lua, H.fixture(name), ... } end

--- The state letter of /proc/<pid>/stat ("R", "S", "Z"...), nil if gone.
function H.proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s:match("%) (%a)")
end

--- Whether pid exists, zombies included (a zombie is a reaping bug).
function H.exists(pid) return H.proc_state(pid) ~= nil end

--- Pids of live processes whose process group is pgid (zombies are dead:
--- an orphan's zombie waits for init, which may be slow in a container).
function H.group_members(pgid)
  local found = {}
  local ls = io.popen("ls /proc")
  for name in ls:lines() do
    if name:match("^%d+$") then
      local f = io.open("/proc/" .. name .. "/stat")
      local s = f and f:read("a")
      if f then f:close() end
      local state, pgrp = (s or ""):match("%) (%a) %d+ (%d+)")
      if pgrp and tonumber(pgrp) == pgid and state ~= "Z" then found[#found + 1] = tonumber(name) end
    end
  end
  ls:close()
  return found
end

--- Live members of group `pgid` once they had time to die: {} is the goal.
function H.leftovers(pgid)
  return H.eventually(function()
    local m = H.group_members(pgid)
    return #m == 0 and m
  end, 5) or H.group_members(pgid)
end

--- Kills a whole group no matter what (cleanup in `finally`).
function H.kill_group(pgid)
  if pgid then os.execute("kill -KILL -" .. pgid .. " 2>/dev/null") end
end

--- Asserts that f() raises a message matching `pattern`, positioned at the
--- line where f is written (misuse is reported at the caller's line).
function H.raises_at(f, pattern)
  local info = debug.getinfo(f, "S")
  local ok, err = pcall(f)
  assert.is_false(ok, "no error")
  local file = info.short_src:match("[^/]*$"):gsub("%p", "%%%0")
  assert.matches("^[^:]*" .. file .. ":" .. info.linedefined .. ": " .. pattern, tostring(err))
end

--- Polls fn() until true or `timeout` seconds pass; returns fn()'s last value.
function H.eventually(fn, timeout)
  local deadline = pm.time() + (timeout or 3)
  repeat
    local v = fn()
    if v then return v end
    pm.sleep(0.02)
  until pm.time() > deadline
  return fn()
end

--- after_each: a test must leave no running child and no open handle.
--- A leaked child fails the test; it is killed first, so that the next
--- test starts clean.
function H.assert_no_live_handles()
  local leaked = {}
  for _, p in ipairs(pm.active()) do
    leaked[#leaked + 1] = p.pid
    pcall(p.kill, p, "KILL")  -- a closed Process raises: it is being stopped
  end
  pm.loop()
  -- A kill in progress may watch a dead leader's group a little longer
  -- without keeping the loop alive; give it its grace.
  H.eventually(function() pm.loop(); return pm._handles() == 0 end, 3)
  assert.are.same({}, leaked, "the test left running children (pids above)")
  assert.are.equal(0, pm._handles(), "live libuv handles after the test")
end

--- The descriptors open in process pid (default: this one), as a count:
--- the listing's own pipe is left out, and so is one that closed while
--- listing (popen's copy of the write end); a leaked one stays open.
function H.fd_count(pid)
  pid = pid or require("procmon.mondir").self()
  local p = assert(io.popen(("me=$(readlink /proc/$$/fd/1); for f in /proc/%s/fd/*; do "
    .. 'l=$(readlink "$f"); [ -z "$l" ] || [ "$l" = "$me" ] || echo; done'):format(pid)))
  local out = p:read("a")
  p:close()
  return #out
end

function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function H.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -m 700 " .. p))
  return p
end

return H
