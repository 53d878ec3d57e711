-- scripts/examples/*.lua, run as a user would: with the interpreter running
-- the suite (procrun, or lua5.4 finding procmon.so through LUA_CPATH, which
-- spec/run exports), checking exit codes and what they print.
local pm = require "procmon"
local H = require "helpers"

local EXAMPLES = H.root .. "/scripts/examples/"

--- Runs an example with the suite's interpreter.
local function example(name, args, opts)
  local cmd = { H.lua, EXAMPLES .. name .. ".lua" }
  for i = 1, #(args or {}) do cmd[#cmd + 1] = args[i] end
  opts = opts or {}
  opts.timeout = opts.timeout or 30
  return assert(pm.run(cmd, opts))
end

local function lines(s)
  local t = {}
  for l in (s or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local kill_group, leftovers = H.kill_group, H.leftovers

describe("examples", function()
  after_each(H.assert_no_live_handles)

  it("all compile", function()
    local ls = io.popen("ls '" .. EXAMPLES .. "'")
    local n = 0
    for name in ls:lines() do
      if name:match("%.lua$") then
        n = n + 1
        assert(loadfile(EXAMPLES .. name))
      end
    end
    ls:close()
    assert.is_true(n >= 2)
  end)

  it("run directly through their #!/usr/bin/env procrun line", function()
    local r = assert(pm.run({ EXAMPLES .. "parallel.lua", "echo direct" },
      { env = { PATH = H.build .. ":" .. os.getenv("PATH") }, timeout = 30 }))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("echo direct%s+direct\n", r.stdout)
  end)

  describe("parallel.lua", function()
    --- The table rows by job number: { status =, time =, rest = }.
    local function rows(stdout)
      local t = {}
      for _, l in ipairs(lines(stdout)) do
        local i, status, time, rest = l:match("^(%d+)%s+(.-)%s+([%d.]+s)  (.*)$")
        if i then t[tonumber(i)] = { status = status, time = time, rest = rest } end
      end
      return t
    end

    it("runs the demo set without arguments and exits 0 (make demo)", function()
      local r = example("parallel")
      assert.are.equal(0, r.code, r.stderr)
      local out = lines(r.stdout)
      assert.matches("^#%s+STATUS%s+TIME%s+COMMAND%s+OUTPUT$", out[1])
      local rs = rows(r.stdout)
      assert.are.equal(6, #rs)
      for i = 1, 6 do assert.are.equal("ok", rs[i].status, r.stdout) end
      assert.matches("sleep 0.3; echo one%s+one$", rs[1].rest)
      assert.matches("uname %-sr%s+Linux", rs[3].rest)
      assert.matches("to stderr$", rs[5].rest)  -- stderr when stdout is empty
      assert.matches("^6 jobs, 6 ok, 0 failed in [%d.]+s %(%-j 4%)$", out[#out])
      -- Progress on stderr, one line per finished job.
      assert.are.equal(6, #lines(r.stderr))
      assert.matches("^%[1/6%] #%d ok ", r.stderr)
    end)

    it("reports failures, timeouts and signals in input order and exits 1", function()
      local r = example("parallel", { "-j", "3", "-t", "2", "--",
        "exit 3", "echo hi", "sleep 30", "nocmd-xyz", "kill -KILL $$" })
      assert.are.equal(1, r.code)
      local rs = rows(r.stdout)
      assert.are.equal("exit 3", rs[1].status)
      assert.are.equal("ok", rs[2].status)
      assert.matches("echo hi%s+hi$", rs[2].rest)
      assert.are.equal("timeout", rs[3].status)
      assert.are.equal("exit 127", rs[4].status)
      assert.matches("not found", rs[4].rest)
      assert.are.equal("sig KILL", rs[5].status)
      assert.matches("^5 jobs, 1 ok, 4 failed in", lines(r.stdout)[7])
      -- The timed-out job was killed, not waited for.
      local took = tonumber(rs[3].time:match("[%d.]+"))
      assert.is_true(took < 10, "the timeout did not stop 'sleep 30'")
    end)

    it("reports a job that exits 0 on its timeout's TERM as a timeout", function()
      local r = example("parallel", { "-t", "0.5", "--",
        "trap 'exit 0' TERM; while :; do sleep 0.05; done", "echo fine" })
      assert.are.equal(1, r.code)
      local rs = rows(r.stdout)
      assert.are.equal("timeout", rs[1].status)
      assert.are.equal("ok", rs[2].status)
      assert.matches("^2 jobs, 1 ok, 1 failed in", lines(r.stdout)[4])
    end)

    -- Each job logs "+" when it starts and "-" when it ends to one file;
    -- replaying the log gives the highest number running at once.
    local function max_running(j, njobs)
      local log = os.tmpname()
      local cmd = ("echo + >> %s; sleep 0.3; echo - >> %s"):format(log, log)
      local args = { "-j", tostring(j) }
      for _ = 1, njobs do args[#args + 1] = cmd end
      local r = example("parallel", args)
      local running, max, events = 0, 0, 0
      for _, e in ipairs(lines(H.read_file(log))) do
        running = running + (e == "+" and 1 or -1)
        if running > max then max = running end
        events = events + 1
      end
      os.remove(log)
      return r, max, events
    end

    it("never runs more than -j commands at once", function()
      local r, max, events = max_running(2, 6)
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(12, events)
      assert.are.equal(2, max)
      local r1, max1 = max_running(1, 3)
      assert.are.equal(0, r1.code, r1.stderr)
      assert.are.equal(1, max1)
      assert.matches("%(%-j 1%)", r1.stdout)
    end)

    it("rejects bad options with usage on stderr and exit 2", function()
      for _, args in ipairs({ { "-j", "0" }, { "-j", "x" }, { "-t" }, { "--bogus" } }) do
        local r = example("parallel", args)
        assert.are.equal(2, r.code)
        assert.are.equal("", r.stdout)
        assert.matches("usage: parallel.lua", r.stderr, 1, true)
      end
      local h = example("parallel", { "--help" })
      assert.are.equal(0, h.code)
      assert.matches("usage: parallel.lua", h.stdout, 1, true)
    end)
  end)

  describe("watch_build.lua", function()
    local function report(stdout)
      local t = {}
      for _, l in ipairs(lines(stdout)) do
        local k, v = l:match("^(%a+):%s+(.*)$")
        if k then t[k] = v end
      end
      return t
    end

    local function streamed(stdout)
      local t = {}
      for _, l in ipairs(lines(stdout)) do
        local tag, text = l:match("^%[%d%d:%d%d:%d%d %+[%d.]+s%] %[(%a+)%] (.*)$")
        if tag then t[#t + 1] = tag .. " " .. text end
      end
      return t
    end

    it("streams the demo build line by line and reports success", function()
      local r = example("watch_build")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({
        "out compiling parser.c", "out compiling lexer.c", "out compiling codegen.c",
        "out compiling runtime.c", "err warning: runtime.c: unused variable 'x'",
        "out linking app", "out build finished",
      }, streamed(r.stdout))
      local rep = report(r.stdout)
      assert.are.equal("exit", rep.reason)
      assert.are.equal("0", rep.code)
      assert.are.equal("-", rep.signal)
      assert.are.equal("6 stdout, 1 stderr", rep.lines)
      assert.matches("^[%d.]+s$", rep.duration)
      assert.is_true(tonumber(rep.duration:match("[%d.]+")) >= 0.5, "the demo build did not take ~1 s")
      assert.matches("last 1 stderr lines:\n  | warning: runtime.c: unused variable 'x'\nBUILD OK\n$", r.stdout)
      assert.are.equal("", r.stderr)
    end)

    it("stamps lines as they arrive, not at the end", function()
      local r = example("watch_build", { "echo first; sleep 0.5; echo second" })
      assert.are.equal(0, r.code)
      local t1 = tonumber(r.stdout:match("%+([%d.]+)s%] %[out%] first"))
      local t2 = tonumber(r.stdout:match("%+([%d.]+)s%] %[out%] second"))
      assert.is_true(t2 - t1 >= 0.3, "lines were not streamed: " .. t1 .. " " .. t2)
    end)

    it("exits with the build's code and keeps the last --tail stderr lines", function()
      local r = example("watch_build", { "--tail", "2",
        "echo building; for i in 1 2 3 4; do echo error$i >&2; done; exit 2" })
      assert.are.equal(2, r.code)
      local rep = report(r.stdout)
      assert.are.equal("exit", rep.reason)
      assert.are.equal("2", rep.code)
      assert.are.equal("1 stdout, 4 stderr", rep.lines)
      assert.matches("last 2 stderr lines:\n  | error3\n  | error4\nBUILD FAILED\n$", r.stdout)
    end)

    it("runs several arguments as an argv, without a shell", function()
      local r = example("watch_build", { "printf", "%s\\n", "a b", "$HOME" })
      assert.are.equal(0, r.code)
      assert.are.same({ "out a b", "out $HOME" }, streamed(r.stdout))
    end)

    it("kills the whole build on --timeout and exits 124", function()
      local r = example("watch_build", { "--timeout", "0.5", "--", "sleep 30 | cat & echo started; wait" })
      local rep = report(r.stdout)
      local pgid = tonumber(rep.pid)
      finally(function() kill_group(pgid) end)
      assert.are.equal(124, r.code)
      assert.are.equal("timeout", rep.reason)
      assert.are.equal("TERM", rep.signal)
      assert.are.same({ "out started" }, streamed(r.stdout))
      assert.is_true(tonumber(rep.duration:match("[%d.]+")) < 5)
      assert.are.same({}, leftovers(pgid))
    end)

    it("fails a build that exits 0 on its timeout's TERM (exit 124, BUILD FAILED)", function()
      local r = example("watch_build", { "--timeout", "0.5", "--",
        "trap 'exit 0' TERM; echo started; while :; do sleep 0.05; done" })
      local rep = report(r.stdout)
      assert.are.equal("timeout", rep.reason)
      assert.are.equal("0", rep.code)
      assert.matches("BUILD FAILED\n$", r.stdout)
      assert.are.equal(124, r.code)
    end)

    it("kills a build that goes quiet on --idle", function()
      local r = example("watch_build", { "--idle", "1",
        "echo a; sleep 0.2; echo b >&2; sleep 0.2; echo c; sleep 30" })
      local rep = report(r.stdout)
      finally(function() kill_group(tonumber(rep.pid)) end)
      assert.are.equal(124, r.code)
      assert.are.equal("idle_timeout", rep.reason)
      assert.are.same({ "out a", "err b", "out c" }, streamed(r.stdout))
      assert.are.same({}, leftovers(tonumber(rep.pid)))
    end)

    it("reports a command that cannot start", function()
      local r = example("watch_build", { "no-such-command-xyz", "arg" })
      assert.are.equal(127, r.code)
      assert.matches("ENOENT", r.stderr)
      assert.are.equal("", r.stdout)
    end)
  end)
end)
