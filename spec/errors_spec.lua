-- Misuse raises with the argument named; system failures return
-- nil, msg, code; errors in callbacks and tasks are never swallowed.
local pm = require "procmon"
local H = require "helpers"

describe("errors", function()
  after_each(H.assert_no_live_handles)

  describe("misuse raises", function()
    local cases = {
      { "unknown option", function() pm.spawn({ "true" }, { tiemout = 1 }) end,
        "bad argument #2 to 'spawn' %(unknown option 'tiemout'%)" },
      { "cmd of the wrong type", function() pm.spawn(42) end,
        "bad argument #1 to 'spawn' %(table %(argv; a string needs shell = true%) expected, got number%)" },
      { "a string cmd without shell", function() pm.spawn("ls -l") end, "a string needs shell = true" },
      { "a table cmd with shell", function() pm.spawn({ "ls" }, { shell = true }) end,
        "string %(with shell = true%) expected" },
      { "an empty argv", function() pm.spawn({}) end, "bad argument #1 to 'spawn' %(empty command%)" },
      { "a non-string argv element", function() pm.spawn({ "echo", {} }) end, "command element 2" },
      { "a negative timeout", function() pm.spawn({ "true" }, { timeout = -1 }) end,
        "option 'timeout': must be a non%-negative number" },
      { "a fractional max_buffer", function() pm.spawn({ "true" }, { max_buffer = 1.5 }) end,
        "option 'max_buffer': must be a non%-negative whole number of bytes" },
      { "a wrong option type", function() pm.spawn({ "true" }, { cwd = 1 }) end,
        "option 'cwd': string expected, got number" },
      { "an unknown stream mode", function() pm.spawn({ "true" }, { stdout = "file" }) end,
        "option 'stdout'" },
      { "an unknown signal", function() pm.spawn({ "true" }, { kill_signal = "NOPE" }) end,
        "bad argument #2 to 'spawn' %(option 'kill_signal': unknown signal 'NOPE'%)" },
      { "a kill_signal of the wrong type", function() pm.spawn({ "true" }, { kill_signal = {} }) end,
        "bad argument #2 to 'spawn' %(option 'kill_signal': signal name or number expected, got table%)" },
      { "a kill_signal out of range", function() pm.spawn({ "true" }, { kill_signal = 0 }) end,
        "option 'kill_signal': unknown signal '0'" },
      { "data in stdin", function() pm.spawn({ "true" }, { stdin = "hello" }) end,
        "bad argument #2 to 'spawn' %(option 'stdin': .* expected %(data to write goes in 'input'%)%)" },
      { "input with stdin", function() pm.spawn({ "true" }, { input = "x", stdin = "pipe" }) end,
        "option 'input': cannot be combined with 'stdin'" },
      { "input that is not a string", function() pm.spawn({ "true" }, { input = 42 }) end,
        "option 'input': string expected, got number" },
      { "input to a detached process", function() pm.spawn({ "true" }, { input = "x", detached = true }) end,
        "option 'input': a detached process takes no input" },
      { "a NUL byte in argv", function() pm.spawn({ "echo", "a\0b" }) end,
        "bad argument #1 to 'spawn' %(command element 2 contains a NUL byte%)" },
      { "a NUL byte in the shell string", function() pm.spawn("echo a\0b", { shell = true }) end,
        "bad argument #1 to 'spawn' %(command contains a NUL byte%)" },
      { "a NUL byte in cwd", function() pm.spawn({ "true" }, { cwd = "/tmp\0/x" }) end,
        "bad argument #2 to 'spawn' %(option 'cwd' contains a NUL byte%)" },
      { "a NUL byte in an env name", function() pm.spawn({ "true" }, { env = { ["A\0B"] = "1" } }) end,
        "option 'env': names must be non%-empty strings without '=' or NUL bytes" },
      { "an empty env name", function() pm.spawn({ "true" }, { env = { [""] = "1" } }) end,
        "option 'env': names must be non%-empty" },
      { "a NUL byte in an env value", function() pm.spawn({ "true" }, { env = { A = "1\0 2" } }) end,
        "option 'env': the value of 'A' contains a NUL byte" },
      { "a NUL byte in a file path", function() pm.spawn({ "true" }, { stdout = { file = "/tmp/a\0b" } }) end,
        "option 'stdout': 'file' contains a NUL byte" },
      { "a NUL byte in a stdin file path", function() pm.spawn({ "true" }, { stdin = { file = "/dev/null\0x" } }) end,
        "option 'stdin': 'file' contains a NUL byte" },
      { "a NUL byte in a cache dir", function() pm.cache.open("/tmp\0/x") end,
        "bad argument #1 to 'open' %(path contains a NUL byte%)" },
      { "a callback without a pipe", function() pm.spawn({ "true" }, { stdout = "null", on_stdout = print }) end,
        "option 'on_stdout' needs stdout = \"pipe\"" },
      { "bad env values", function() pm.spawn({ "true" }, { env = { A = {} } }) end,
        "option 'env': values must be" },
      { "a negative wait", function() pm.spawn(H.cmd("exit", "0")):wait(-1) end,
        "bad argument #1 to 'wait'" },
      { "misuse through run, named as run's own at the caller's line",
        function() pm.run({ "true" }, { tiemout = 1 }) end,
        "bad argument #2 to 'run' %(unknown option 'tiemout'%)" },
      { "a bad command through run", function() pm.run({ "echo", "a\0" }) end,
        "bad argument #1 to 'run' %(command element 2 contains a NUL byte%)" },
      { "misuse through run_all, naming the job", function()
          pm.run_all({ { { "true" } }, { { "true" }, { kill_signal = "NOPE" } } })
        end,
        "bad argument #1 to 'run_all' %(job 2: option 'kill_signal': unknown signal 'NOPE'%)" },
      { "job options that are not a table", function() pm.run_all({ { { "true" }, 5 } }) end,
        "bad argument #1 to 'run_all' %(job 1: options must be a table, got number%)" },
      { "an unknown run_all option", function() pm.run_all({}, { concurency = 2 }) end,
        "bad argument #2 to 'run_all' %(unknown option 'concurency'%)" },
      { "wait on something that is not a Process", function() pm.spawn(H.cmd("exit", "0")).wait({}) end,
        "bad argument #1 to 'wait' %(procmon.Process expected, got table%)" },
      { "result on something that is not a Process", function() pm.spawn(H.cmd("exit", "0")).result(5) end,
        "bad argument #1 to 'result' %(procmon.Process expected, got number%)" },
      { "a task without a function", function() pm.task(1) end, "bad argument #1 to 'task'" },
      { "run_all concurrency 0", function() pm.run_all({}, { concurrency = 0 }) end,
        "concurrency must be a positive integer" },
      { "write without a stdin pipe", function() pm.spawn(H.cmd("sleep", "30")):write("x") end,
        "stdin is not a pipe" },
    }
    for _, c in ipairs(cases) do
      it("on " .. c[1], function()
        assert.error_matches(c[2], c[3])
        -- The children some cases start are not the point: reap them.
        for _, p in ipairs(pm.active()) do
          p:kill("KILL")
          p:wait()
        end
      end)
    end

    it("at the caller's line, through run, run_all and wait too", function()
      local function where(f) H.raises_at(f, "bad argument") end
      where(function() pm.run({ "true" }, { tiemout = 1 }) end)
      where(function() pm.run_all({ { { "true" }, { tiemout = 1 } } }) end)
      where(function() pm.run_all({}, { concurency = 2 }) end)
      where(function() pm.spawn({ "true" }, { kill_signal = "NOPE" }) end)
      local p = assert(pm.spawn(H.cmd("exit", "0")))
      where(function() p.wait({}) end)
      where(function() p:wait(-1) end)
      p:wait()
    end)

    it("on write and on Task methods, named, at the caller's line", function()
      local where = H.raises_at
      local p = assert(pm.spawn(H.cmd("cat"), { stdin = "pipe" }))
      where(function() p:write({}) end, "bad argument #1 to 'write' %(string expected, got table%)")
      where(function() p.write({}, "x") end, "bad argument #1 to 'write' %(procmon.Process expected")
      p:close_stdin()
      where(function() p:write("x") end, "stdin is closed")
      p:wait()
      local q = assert(pm.spawn(H.cmd("exit", "0")))
      where(function() q:write("x") end, "stdin is not a pipe")
      q:wait()
      local t = pm.task(function() return 1 end)
      where(function() t.wait({}) end, "bad argument #1 to 'wait' %(procmon.Task expected, got table%)")
      where(function() t.done(5) end, "bad argument #1 to 'done' %(procmon.Task expected, got number%)")
      assert.are.equal(1, t:wait())
    end)

    it("on a method of a closed process", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30")))
      getmetatable(p).__close(p, nil)
      assert.error_matches(function() p:kill() end, "attempt to use a closed process")
      assert.error_matches(function() p:write("x") end, "attempt to use a closed process")
      assert.are.equal("killed", p:wait().reason)
    end)

    it("on write after close_stdin", function()
      local p = assert(pm.spawn(H.cmd("cat"), { stdin = "pipe" }))
      p:close_stdin()
      assert.error_matches(function() p:write("x") end, "stdin is closed")
      p:wait()
    end)
  end)

  describe("inside procmon's embedded Lua", function()
    it("keeps line numbers; the names of locals are stripped (cmake/dump.lua)", function()
      local open = require("procmon.cache").open
      local info = debug.getinfo(open, "SL")
      assert.are.equal("@[procmon]/procmon.cache.lua", info.source)
      assert.is_not_nil(next(info.activelines))
      assert.is_nil(debug.getlocal(open, 1))
      local cache = assert(require("procmon.cache").open({ dir = H.tmpdir() }))
      local caller
      cache:remember("k", 60, function()
        caller = debug.getinfo(2, "Sl")
        return 1
      end)
      assert.are.equal("@[procmon]/procmon.cache.lua", caller.source)
      assert.is_true(caller.currentline > 0)
    end)
  end)

  describe("run_all", function()
    it("starts no job when one of them is misused", function()
      local jobs = { { H.cmd("sleep", "30") }, { H.cmd("sleep", "30") }, { { "true" }, { tiemout = 1 } } }
      assert.error_matches(function() pm.run_all(jobs, { concurrency = 1 }) end,
        "bad argument #1 to 'run_all' %(job 3: unknown option 'tiemout'%)")
      assert.are.same({}, pm.active())
    end)

    -- Job 1 raises in its on_exit while job 2 runs; jobs 3 and 4 wait for a slot.
    local function raising_jobs(started)
      local function mark(i) return function() started[i] = true end end
      return {
        { H.cmd("exit", "0"), { on_exit = function() error("boom in job 1") end } },
        { H.cmd("sleep", "30"), { on_exit = mark(2) } },
        { H.cmd("echo", "3"), { on_exit = mark(3) } },
        { H.cmd("echo", "4"), { on_exit = mark(4) } },
      }
    end

    local function check_stopped(ok, err, started)
      assert.is_false(ok)
      assert.matches("boom in job 1", err)
      local left = pm.active()
      assert.are.equal(1, #left, "job 2 should be the one left, being stopped")
      assert.are.equal("killed", left[1]:wait().reason)
      pm.loop()
      assert.is_nil(started[3], "a job started after one raised")
      assert.is_nil(started[4], "a job started after one raised")
    end

    it("stops the other jobs and re-raises when a job's on_exit raises", function()
      local started = {}
      local ok, err = pcall(pm.run_all, raising_jobs(started), { concurrency = 2 })
      check_stopped(ok, err, started)
    end)

    it("does the same inside a task", function()
      local started = {}
      local t = pm.task(pm.run_all, raising_jobs(started), { concurrency = 2 })
      local ok, err = pcall(t.wait, t)
      check_stopped(ok, err, started)
    end)
  end)

  describe("system failures return nil, msg, code", function()
    it("for a missing command", function()
      local p, msg, code = pm.spawn({ "no-such-cmd-pm" })
      assert.is_nil(p)
      assert.are.equal("ENOENT", code)
      assert.are.equal("spawn 'no-such-cmd-pm': ENOENT: no such file or directory", msg)
    end)

    it("for a missing cwd, naming the cwd", function()
      local p, msg, code = pm.spawn(H.cmd("echo"), { cwd = "/no/such/dir" })
      assert.is_nil(p)
      assert.are.equal("ENOENT", code)
      assert.matches("cwd '/no/such/dir': ENOENT", msg, 1, true)
    end)

    it("for a cwd that is a file", function()
      local _, msg, code = pm.spawn(H.cmd("echo"), { cwd = H.fixture("echo") })
      assert.are.equal("ENOTDIR", code)
      assert.matches("cwd '", msg, 1, true)
    end)

    it("for a file that is not executable", function()
      local _, msg, code = pm.spawn({ H.fixture("echo") })
      assert.are.equal("EACCES", code)
      assert.matches("EACCES", msg)
    end)

    it("from run and run_all too", function()
      local r, _, code = pm.run({ "no-such-cmd-pm" })
      assert.is_nil(r)
      assert.are.equal("ENOENT", code)
      local rs = pm.run_all({ { { "no-such-cmd-pm" } }, { H.cmd("echo", "ok") } })
      assert.is_false(rs[1].ok)
      assert.are.equal("ENOENT", rs[1].error_code)
      assert.are.equal("ok\n", rs[2].stdout)
    end)

    it("for a write to a child that has exited", function()
      local p = assert(pm.spawn(H.cmd("exit", "0"), { stdin = "pipe" }))
      p:wait()
      local ok, msg, code = p:write("late")
      assert.is_nil(ok)
      assert.are.equal("EPIPE", code)
      assert.matches("EPIPE", msg)
    end)

    it("for a write into a pipe the child closed", function()
      local p = assert(pm.spawn({ "sh", "-c", "exec 0<&-; sleep 0.3" }, { stdin = "pipe" }))
      pm.sleep(0.1)
      local ok, _, code = p:write("x")
      assert.is_nil(ok)
      assert.are.equal("EPIPE", code)
      p:wait()
    end)
  end)

  describe("errors in callbacks", function()
    it("re-raise from wait with the callback's traceback", function()
      local p = assert(pm.spawn(H.cmd("exit", "0"), { on_exit = function() error("boom in on_exit") end }))
      local ok, err = pcall(p.wait, p)
      assert.is_false(ok)
      assert.matches("boom in on_exit", err)
      assert.matches("stack traceback", err)
    end)

    it("re-raise from loop", function()
      pm.spawn(H.cmd("echo", "x"), { on_stdout = function() error("boom in on_stdout") end })
      local ok, err = pcall(pm.loop)
      assert.is_false(ok)
      assert.matches("boom in on_stdout", err)
      pm.loop()  -- the child may not have exited yet when the error stopped the loop
    end)

    it("re-raise from a task's sleep", function()
      pm.task(function()
        pm.sleep(0.01)
        error("boom in task")
      end)
      local ok, err = pcall(pm.loop)
      assert.is_false(ok)
      assert.matches("boom in task", err)
    end)

    it("raise when a plain callback blocks", function()
      local seen
      pm.spawn(H.cmd("exit", "0"), { on_exit = function()
        seen = select(2, pcall(pm.sleep, 0.01))
      end })
      pm.loop()
      assert.matches("cannot block inside a callback", seen)
    end)

    it("raise when a task runs the loop", function()
      local t = pm.task(function() return pcall(pm.loop) end)
      local ok, err = t:wait()
      assert.is_false(ok)
      assert.matches("cannot run the loop inside a task", err)
    end)
  end)
end)
