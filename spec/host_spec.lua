-- The procrun host, exercised from outside: whichever interpreter runs the
-- suite, these specs spawn H.procrun on small scripts and check its exit
-- code, its streams and the processes it leaves (none, unless detached).
local pm = require "procmon"
local H = require "helpers"

local SIGNO = { HUP = 1, INT = 2, TERM = 15 }

--- pairs in key order, so that generated specs keep a stable order.
local function sorted(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local i = 0
  return function()
    i = i + 1
    if keys[i] ~= nil then return keys[i], t[keys[i]] end
  end
end

-- Scripts live in one temporary directory for the whole file.
local dir, nscripts = nil, 0

local function script(src, name)
  nscripts = nscripts + 1
  local path = dir .. "/" .. (name or ("s" .. nscripts .. ".lua"))
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end

--- pm.run of procrun with `args`; a generous timeout so a hang fails, not blocks.
local function procrun(args, opts)
  local cmd = { H.procrun }
  for i = 1, #args do cmd[#cmd + 1] = args[i] end
  opts = opts or {}
  opts.timeout = opts.timeout or 20
  return assert(pm.run(cmd, opts))
end

local kill_group, leftovers = H.kill_group, H.leftovers

local function read_pids(path)
  local pids = {}
  local f = io.open(path)
  if f then
    for line in f:lines() do pids[#pids + 1] = tonumber(line) end
    f:close()
  end
  return pids
end

-- Prelude of the scripts below: spawns a `sleep 100 | cat` tree (its own
-- process group, pgid = pid) and appends its pid to the file arg[1], so
-- that the spec can check the tree is gone once procrun exited. Nothing on
-- stdout or stderr: those are what the specs look at.
local TREE = [[
local pm = require "procmon"
local function tree(opts)
  opts = opts or {}
  opts.shell = true
  local p = assert(pm.spawn("sleep 100 | cat", opts))
  local f = assert(io.open(arg[1], "a"))
  f:write(p.pid, "\n")
  f:close()
  return p
end
]]

--- Runs a TREE script; returns the Result and the pids of the trees it started.
local function run_tree_script(body, ...)
  local path = script(TREE .. body)
  local pidfile = os.tmpname()
  local r = procrun({ path, pidfile, ... })
  local pids = read_pids(pidfile)
  os.remove(pidfile)
  return r, pids
end

describe("procrun", function()
  setup(function() dir = H.tmpdir() end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)
  after_each(H.assert_no_live_handles)

  describe("command line", function()
    it("removes expired cache entries with gc", function()
      local dir = H.tmpdir()
      local env = { PROCMON_STATE_DIR = dir }
      assert.are.equal(0, procrun({ "-e", [[
        local c = require("procmon").cache.open()
        c:set("old", 1, 0.01)
        c:set("kept", 2)
      ]] }, { env = env }).code)
      pm.sleep(0.05)
      local r = procrun({ "gc" }, { env = env })
      assert.are.equal(0, r.code)
      assert.are.equal("removed 1 file from " .. dir .. "/cache\n", r.stdout:match("^[^\n]*\n"))
      r = procrun({ "-e", "io.write(table.concat(require('procmon').cache.open():keys(), ','))" }, { env = env })
      assert.are.equal("kept", r.stdout)
      r = procrun({ "gc", "extra" }, { env = env })
      assert.are.equal(1, r.code)
      assert.matches("no arguments expected", r.stderr)
      os.execute("rm -rf " .. dir)
    end)

    it("prints its version with --version", function()
      local r = procrun({ "--version" })
      assert.are.equal(0, r.code)
      assert.matches("^procrun %d+%.%d+", r.stdout)
      assert.truthy(r.stdout:find(pm.version, 1, true), "version differs from the module's")
      assert.are.equal("", r.stderr)
    end)

    it("has libuv and lua-cjson linked in, and exports Lua's API but not theirs", function()
      -- Two shared objects fewer to load at every start; a C module that
      -- links the shared libuv must not bind to procrun's copy.
      local libs = assert(pm.run({ "ldd", H.procrun })).stdout
      assert.matches("libc%.so", libs)
      assert.is_nil(libs:find("libuv", 1, true))
      assert.is_nil(libs:find("cjson", 1, true))
      local syms = assert(pm.run({ "nm", "-D", "--defined-only", H.procrun })).stdout
      assert.matches(" T lua_pushlstring\n", syms)
      assert.is_nil(syms:find(" T uv_", 1, true))
      assert.is_nil(syms:find(" T luaopen_cjson", 1, true))
    end)

    it("prints usage on stdout with --help", function()
      local r = procrun({ "--help" })
      assert.are.equal(0, r.code)
      assert.matches("usage: procrun SCRIPT", r.stdout, 1, true)
      assert.matches("-e CODE", r.stdout, 1, true)
      assert.are.equal("", r.stderr)
    end)

    it("prints usage on stderr and exits 1 without arguments", function()
      local r = procrun({})
      assert.are.equal(1, r.code)
      assert.are.equal("", r.stdout)
      assert.matches("usage: procrun SCRIPT", r.stderr, 1, true)
    end)

    it("prints usage on stderr and exits 1 for -e without code", function()
      local r = procrun({ "-e" })
      assert.are.equal(1, r.code)
      assert.are.equal("", r.stdout)
      assert.matches("usage:", r.stderr, 1, true)
    end)

    it("reports a missing script file", function()
      local r = procrun({ dir .. "/no-such-script.lua" })
      assert.are.equal(1, r.code)
      assert.are.equal("", r.stdout)
      assert.matches("^procrun: ", r.stderr)
      assert.matches("no-such-script.lua", r.stderr, 1, true)
    end)

    it("reports a syntax error", function()
      local r = procrun({ script("local x = = 1\n") })
      assert.are.equal(1, r.code)
      assert.are.equal("", r.stdout)
      assert.matches("^procrun: .*:1:", r.stderr)
    end)
  end)

  describe("arg and ...", function()
    -- Prints everything lua5.4 defines for a script, arg[-1] apart (the
    -- interpreter's own path), so that the output compares across the two.
    local SHOW = [[
local keys = {}
for k in pairs(arg) do keys[#keys + 1] = k end
table.sort(keys)
for _, k in ipairs(keys) do
  if k ~= -1 then io.write("arg[", k, "]=", arg[k], "\n") end
end
io.write("#arg=", #arg, "\n")
local n = select("#", ...)
io.write("n=", n, "\n")
for i = 1, n do io.write("...[", i, "]=", (select(i, ...)), "\n") end
]]

    it("sets arg[-1], arg[0], arg[1..] and ... as lua5.4 does", function()
      local path = script(SHOW .. 'io.write("interp=", arg[-1], "\\n")\n')
      local r = procrun({ path, "a", "b c", "" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(table.concat({
        "arg[0]=" .. path, "arg[1]=a", "arg[2]=b c", "arg[3]=",
        "#arg=3", "n=3", "...[1]=a", "...[2]=b c", "...[3]=",
        "interp=" .. H.procrun, "" }, "\n"), r.stdout)
    end)

    it("gives the same arg and ... as a stock lua5.4", function()
      local path = script(SHOW)
      local args = { path, "x", "--", "-e", "two words", "ü" }
      local ours = procrun(args)
      local lua = assert(pm.run({ "lua5.4", table.unpack(args) }))
      assert.are.equal(0, lua.code, lua.stderr)
      assert.are.equal(0, ours.code, ours.stderr)
      assert.are.equal(lua.stdout, ours.stdout)
    end)

    it("keeps a relative script path in arg[0]", function()
      script(SHOW, "rel.lua")
      local r = procrun({ "rel.lua", "1" }, { cwd = dir })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("^arg%[0%]=rel%.lua\narg%[1%]=1\n", r.stdout)
    end)

    it("runs -e CODE with arg[0] the code and ... its arguments", function()
      local code = 'io.write(arg[0], "|", select("#", ...), "|", table.concat({...}, ","), "|", arg[1], arg[2])'
      local r = procrun({ "-e", code, "p", "q" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(code .. "|2|p,q|pq", r.stdout)
    end)

    it("runs -e CODE without arguments", function()
      local r = procrun({ "-e", 'io.write(select("#", ...), " ", #arg)' })
      assert.are.equal("0 0", r.stdout)
    end)

    it("passes stdin through to the script", function()
      local r = procrun({ "-e", 'io.write(io.read("a"):upper())' }, { input = "hello\n" })
      assert.are.equal("HELLO\n", r.stdout)
    end)

    it("runs a #!/usr/bin/env procrun script", function()
      local path = script("#!/usr/bin/env procrun\n" .. SHOW ..
        'io.write("pm=", type(require("procmon").spawn), "\\n")\n', "shebang")
      assert.is_true(os.execute("chmod +x '" .. path .. "'"))
      local r = assert(pm.run({ path, "one", "two" },
        { env = { PATH = H.build .. ":" .. os.getenv("PATH") }, timeout = 20 }))
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(table.concat({ "arg[0]=" .. path, "arg[1]=one", "arg[2]=two",
        "#arg=2", "n=2", "...[1]=one", "...[2]=two", "pm=function", "" }, "\n"), r.stdout)
    end)
  end)

  describe("event loop", function()
    it("runs after the main chunk until nothing is pending", function()
      local r = procrun({ "-e", [[
        local pm = require "procmon"
        print("main")
        pm.spawn({ "sh", "-c", "exit 3" }, { on_exit = function(r) print("on_exit", r.code) end })
        pm.task(function()
          pm.sleep(0.2)
          print("timer")
          local r = pm.run({ "echo", "late" })  -- started from the loop, waited on too
          io.write("run ", r.stdout)
        end)
        print("end of main")
      ]] })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
      local lines = {}
      for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.same({ "main", "end of main" }, { lines[1], lines[2] })
      table.sort(lines, function(a, b) return a < b end)
      assert.are.same({ "end of main", "main", "on_exit\t3", "run late", "timer" }, lines)
    end)

    it("exits at once when nothing is pending", function()
      local r = procrun({ "-e", "local pm = require 'procmon'" })
      assert.are.equal(0, r.code)
      assert.are.equal("", r.stdout)
      assert.are.equal("", r.stderr)
    end)
  end)

  describe("uncaught errors", function()
    local cases = {
      ["the main chunk"] = [[
        tree()
        error("boom in main")
      ]],
      ["an on_exit callback"] = [[
        tree()
        pm.spawn({ "true" }, { on_exit = function() error("boom in on_exit") end })
      ]],
      ["a task"] = [[
        tree()
        pm.task(function()
          pm.sleep(0.05)
          error("boom in task")
        end)
      ]],
      ["a line callback"] = [[
        tree()
        pm.spawn({ "echo", "x" }, { lines = true, on_stdout = function(l) error("boom in on_stdout") end })
      ]],
      ["a task, while the main chunk waits"] = [[
        local p = tree()
        pm.task(function()
          pm.sleep(0.05)
          error("boom in task")
        end)
        p:wait()
      ]],
    }
    for where, body in sorted(cases) do
      it("in " .. where .. " report procrun: + traceback, exit 1, kill the children", function()
        local r, pids = run_tree_script(body)
        finally(function() kill_group(pids[1]) end)
        assert.are.equal(1, r.code)
        assert.are.equal("", r.stdout)
        assert.matches("^procrun: ", r.stderr)
        assert.matches("boom in %a+", r.stderr)
        assert.matches("stack traceback:", r.stderr, 1, true)
        assert.are.equal(1, #pids)
        assert.are.same({}, leftovers(pids[1]))
      end)
    end

    it("reports a non-string error object", function()
      local r = procrun({ "-e", "error(setmetatable({}, { __tostring = function() return 'custom' end }))" })
      assert.are.equal(1, r.code)
      assert.matches("^procrun: custom", r.stderr)
      local t = procrun({ "-e", "error({})" })
      assert.are.equal(1, t.code)
      assert.matches("^procrun: %(error object is a table value%)", t.stderr)
    end)

    it("is not reported when the script catches it", function()
      local r = procrun({ "-e", [[
        local pm = require "procmon"
        pm.spawn({ "true" }, { on_exit = function() error("caught") end })
        local ok, err = pcall(pm.loop)
        io.write(tostring(ok), " ", tostring(err):match("caught") or "?")
      ]] })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("false caught", r.stdout)
    end)
  end)

  describe("os.exit", function()
    it("exits with n and kills running children", function()
      local r, pids = run_tree_script("tree(); tree(); os.exit(5)")
      finally(function() kill_group(pids[1]); kill_group(pids[2]) end)
      assert.are.equal(5, r.code)
      assert.are.equal("", r.stderr)
      assert.are.equal(2, #pids)
      assert.are.same({}, leftovers(pids[1]))
      assert.are.same({}, leftovers(pids[2]))
    end)

    it("closes the state with os.exit(n, true) and still kills children", function()
      local r, pids = run_tree_script("tree(); os.exit(4, true)")
      finally(function() kill_group(pids[1]) end)
      assert.are.equal(4, r.code)
      assert.are.equal("", r.stderr)
      assert.are.same({}, leftovers(pids[1]))
    end)

    it("works from a callback, with children still running", function()
      local r, pids = run_tree_script([[
        tree()
        pm.spawn({ "true" }, { on_exit = function() os.exit(6) end })
      ]])
      finally(function() kill_group(pids[1]) end)
      assert.are.equal(6, r.code)
      assert.are.same({}, leftovers(pids[1]))
    end)

    it("works from a task", function()
      local r, pids = run_tree_script([[
        tree()
        pm.task(function() pm.sleep(0.05); os.exit(7) end)
      ]])
      finally(function() kill_group(pids[1]) end)
      assert.are.equal(7, r.code)
      assert.are.same({}, leftovers(pids[1]))
    end)

    it("maps true to 0 and false to 1", function()
      assert.are.equal(0, procrun({ "-e", "os.exit(true)" }).code)
      assert.are.equal(1, procrun({ "-e", "os.exit(false)" }).code)
      assert.are.equal(0, procrun({ "-e", "os.exit()" }).code)
    end)
  end)

  describe("signals", function()
    -- What the script does once its tree runs and it said "ready".
    local modes = {
      ["waits on the child"] = "p:wait()",
      ["runs the loop after the main chunk"] = "p = nil",
      ["is in a busy Lua loop"] = "while true do end",
      ["is in a busy loop inside a task"] = "pm.task(function() while true do end end)",
    }

    --- Starts procrun on a script that spawns `child.cmd` with `child.opts`
    --- (Lua source), runs `child.before`, says "ready <pgid>" on stderr and
    --- then runs `body`. Returns procrun's Process and the child's pgid.
    local function start(body, child)
      local path = script(([[
        local pm = require "procmon"
        local p = assert(pm.spawn(%s, %s))
        %s
        io.stderr:write("ready ", p.pid, "\n")
        io.stderr:flush()
        %s
      ]]):format(child.cmd, child.opts, child.before or "", body))
      local pgid, errlines = nil, {}
      local p = assert(pm.spawn({ H.procrun, path }, {
        lines = true,
        timeout = 20,
        on_stderr = function(line)
          errlines[#errlines + 1] = line
          pgid = pgid or tonumber(line:match("^ready (%d+)$"))
        end,
      }))
      assert.truthy(H.eventually(function() return pgid or not p:running() end, 5))
      assert.is_number(pgid, "no ready line; stderr: " .. table.concat(errlines, "\n"))
      return p, pgid, errlines
    end

    for sig, signo in sorted(SIGNO) do
      for mode, body in sorted(modes) do
        it(("SIG%s while procrun %s: exit %d, the child's group is gone"):format(sig, mode, 128 + signo), function()
          local p, pgid = start(body, { cmd = "'sleep 100 | cat'", opts = "{ shell = true }" })
          finally(function() kill_group(pgid) end)
          -- The whole tree runs: sh, sleep and cat in the child's group.
          assert.is_true(H.eventually(function() return #H.group_members(pgid) >= 3 end))
          assert.is_true(p:running())
          p:kill(sig)
          local r = p:wait()
          assert.are.equal(128 + signo, r.code)
          assert.are.equal("", r.stdout)
          assert.are.same({}, leftovers(pgid))
        end)
      end
    end

    it("SIGKILLs a child that ignores TERM once its kill_grace is over", function()
      local p, pgid = start("p:wait()", {
        cmd = [["trap '' TERM; sleep 100; echo never"]],
        opts = "{ shell = true, kill_grace = 3 }",
      })
      finally(function() kill_group(pgid) end)
      assert.is_true(H.eventually(function() return #H.group_members(pgid) >= 2 end))
      local t0 = pm.time()
      p:kill("TERM")
      pm.sleep(0.2)
      -- Within the grace the group still stands (it ignores TERM).
      assert.is_true(#H.group_members(pgid) >= 2, "the group died before its kill_grace")
      local r = p:wait()
      local took = pm.time() - t0
      assert.are.equal(143, r.code)
      assert.are.same({}, leftovers(pgid))
      -- A lower bound only (a loaded machine is late, never early): 3 s
      -- passed, so it was the job's kill_grace, not the default 2 s.
      assert.is_true(took >= 2.8, "kill_grace was not honoured (the default is 2 s): " .. took)
      assert.is_true(took < 30, "procrun did not end after the grace: " .. took)
    end)

    it("adds nothing of its own to the script's stdout on a signal", function()
      local p, pgid = start("p:wait()", { cmd = "{ 'sleep', '100' }", opts = "{}",
        before = "io.stdout:write('from the script\\n'); io.stdout:flush()" })
      finally(function() kill_group(pgid) end)
      p:kill("INT")
      local r = p:wait()
      assert.are.equal(130, r.code)
      assert.are.equal("from the script\n", r.stdout)
      assert.are.same({}, leftovers(pgid))
    end)
  end)

  describe("detached children", function()
    local DETACHED = [[
      local d = assert(pm.spawn({ "sleep", "100" }, { detached = true }))
      local f = assert(io.open(arg[2], "w"))
      f:write(d.pid)
      f:close()
    ]]

    local function run_detached(body)
      local dfile = os.tmpname()
      local t0 = pm.time()
      local r, pids = run_tree_script(DETACHED .. body, dfile)
      local took = pm.time() - t0
      local dpid = tonumber(H.read_file(dfile))
      os.remove(dfile)
      return r, dpid, pids, took
    end

    it("survive a normal exit, which does not wait for them", function()
      local r, dpid, _, took = run_detached("")
      finally(function() kill_group(dpid) end)
      assert.are.equal(0, r.code, r.stderr)
      assert.is_number(dpid)
      assert.is_true(took < 10, "procrun waited for its detached child")
      pm.sleep(0.1)
      assert.are.equal("S", H.proc_state(dpid), "the detached child did not survive procrun")
    end)

    it("survive an uncaught error that kills the other children", function()
      local r, dpid, pids = run_detached("tree(); error('boom')")
      finally(function() kill_group(dpid); kill_group(pids[1]) end)
      assert.are.equal(1, r.code)
      assert.are.same({}, leftovers(pids[1]))
      assert.are.equal("S", H.proc_state(dpid), "the detached child did not survive procrun")
    end)

    it("survive os.exit", function()
      local r, dpid, pids = run_detached("tree(); os.exit(3)")
      finally(function() kill_group(dpid); kill_group(pids[1]) end)
      assert.are.equal(3, r.code)
      assert.are.same({}, leftovers(pids[1]))
      assert.are.equal("S", H.proc_state(dpid), "the detached child did not survive procrun")
    end)
  end)

  describe("writing to a child that exited", function()
    it("returns nil, msg, EPIPE and procrun carries on", function()
      local r = procrun({ "-e", [[
        local pm = require "procmon"
        -- A child that closed its stdin but still runs: the write reaches
        -- a pipe without a reader (SIGPIPE territory).
        local p = assert(pm.spawn({ "sh", "-c", "exec 0<&-; sleep 5" }, { stdin = "pipe" }))
        local ok, msg, code
        for _ = 1, 200 do
          ok, msg, code = p:write(("x"):rep(65536))
          if not ok then break end
          pm.sleep(0.01)
        end
        print(ok, code, msg ~= nil)
        p:kill("KILL")
        p:wait()
        -- A child that exited and was reaped.
        local q = assert(pm.spawn({ "true" }, { stdin = "pipe" }))
        q:wait()
        print(q:write("late"))
        print("alive")
      ]] })
      assert.are.equal(0, r.code, r.stderr)
      local lines = {}
      for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.equal("nil\tEPIPE\ttrue", lines[1])
      assert.matches("^nil\t.*EPIPE.*\tEPIPE$", lines[2])
      assert.are.equal("alive", lines[3])
    end)
  end)
end)
