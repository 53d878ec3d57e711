-- pm.spawn / pm.run / Process: exit status, options, kill, stdin, env.
local pm = require "procmon"
local H = require "helpers"

describe("process", function()
  after_each(H.assert_no_live_handles)

  describe("exit status", function()
    it("returns code, streams and ok for a normal exit", function()
      local r = assert(pm.run(H.cmd("exit", "3")))
      assert.are.equal(3, r.code)
      assert.is_nil(r.signal)
      assert.is_false(r.ok)
      assert.are.equal("exit", r.reason)
      assert.are.equal("out\n", r.stdout)
      assert.are.equal("err\n", r.stderr)
      assert.is_false(r.timed_out)
      assert.is_false(r.truncated)
      assert.is_true(r.ended_at >= r.started_at)
      assert.are.equal(r.ended_at - r.started_at, r.duration)
    end)

    it("says ok for exit 0 and keeps cmd and name", function()
      local cmd = H.cmd("echo", "hi")
      local r = pm.run(cmd, { name = "greeter" })
      assert.is_true(r.ok)
      assert.are.equal(0, r.code)
      assert.are.equal("hi\n", r.stdout)
      assert.are.equal(cmd, r.cmd)
      assert.are.equal("greeter", r.name)
    end)

    it("reports a signal death with a nil code and the signal name", function()
      local r = pm.run({ "sh", "-c", "kill -KILL $$" })
      assert.is_nil(r.code)
      assert.are.equal("KILL", r.signal)
      assert.are.equal("signal", r.reason)
      assert.is_false(r.ok)
    end)

    it("reports reason 'killed' after p:kill", function()
      local p = assert(pm.spawn({ "sh", "-c", "exec sleep 30" }))
      assert.is_true(p:running())
      assert.is_true(p:kill())
      local r = p:wait()
      assert.are.equal("killed", r.reason)
      assert.are.equal("TERM", r.signal)
      assert.is_false(p:running())
    end)

    it("reports reason 'killed' when the child exits by itself on TERM", function()
      local ready = false
      local p = assert(pm.spawn({ "sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done" },
        { lines = true, on_stdout = function(l) ready = ready or l == "ready" end }))
      assert.is_true(H.eventually(function() return ready end))
      p:kill()
      local r = p:wait()
      assert.are.equal(7, r.code)
      assert.are.equal("killed", r.reason)
    end)

    -- A child that traps TERM and exits 0 was still stopped: not a success.
    local TRAP_EXIT_0 = { "sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done" }

    it("is not ok when a timeout stopped it, even with exit code 0", function()
      local r = pm.run(TRAP_EXIT_0, { timeout = 0.3 })
      assert.are.equal(0, r.code)
      assert.are.equal("timeout", r.reason)
      assert.is_false(r.ok)
    end)

    it("is not ok when p:kill stopped it, even with exit code 0", function()
      local ready = false
      local p = assert(pm.spawn(TRAP_EXIT_0,
        { lines = true, on_stdout = function(l) ready = ready or l == "ready" end }))
      assert.is_true(H.eventually(function() return ready end))
      p:kill()
      local r = p:wait()
      assert.are.equal(0, r.code)
      assert.are.equal("killed", r.reason)
      assert.is_false(r.ok)
    end)

    it("names real-time signals (RTMIN, RTMIN+n) in Result.signal", function()
      for _, name in ipairs({ "RTMIN", "RTMIN+2", "SIGRTMIN+3" }) do
        local p = assert(pm.spawn(H.cmd("sleep", "30"), { stdout = "null" }))
        assert.is_true(p:kill(name))
        assert.are.equal((name:gsub("^SIG", "")), p:wait().signal)
      end
      -- A death nobody here asked for is named the same way.
      assert.are.equal("RTMIN", pm.run({ "sh", "-c", "kill -s RTMIN $$" }).signal)
    end)

    it("keeps reason 'exit' after a signal that does not ask to end", function()
      local p = assert(pm.spawn({ "sh", "-c", "trap '' USR1; sleep 0.2" }))
      pm.sleep(0.05)
      p:kill("USR1")
      assert.are.equal("exit", p:wait().reason)
    end)

    it("accepts signal names and numbers in kill", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30")))
      assert.is_true(p:kill(0))  -- probe only
      assert.is_true(p:running())
      p:kill("SIGUSR1")
      assert.are.equal("USR1", p:wait().signal)
    end)

    it("fails kill on an exited process without raising", function()
      local p = assert(pm.spawn(H.cmd("exit", "0")))
      p:wait()
      local ok, msg, code = p:kill()
      assert.is_nil(ok)
      assert.are.equal("ESRCH", code)
      assert.matches("kill %d+: ESRCH", msg)
    end)

    it("has a pid that names the child", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30")))
      assert.is_number(p.pid)
      assert.truthy(H.exists(p.pid))
      p:kill("KILL")
      assert.are.equal(p.pid, p:wait().pid)
      assert.falsy(H.exists(p.pid))
    end)
  end)

  describe("wait", function()
    it("returns the same Result every time", function()
      local p = assert(pm.spawn(H.cmd("echo", "x")))
      local r = p:wait()
      assert.are.equal(r, p:wait())
      assert.are.equal(r, p:result())
    end)

    it("times out with nil, msg, ETIMEDOUT and leaves the process running", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30")))
      local r, msg, code = p:wait(0.1)
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("timed out", msg)
      assert.is_true(p:running())
      p:kill("KILL")
      assert.are.equal("KILL", p:wait(5).signal)
    end)

    it("waits for ever with math.huge (no overflow into 'at once')", function()
      local p = assert(pm.spawn(H.cmd("sleep", "0.2")))
      local r, msg = p:wait(math.huge)
      assert.is_table(r, msg)
      assert.are.equal(0, r.code)
      r = assert(pm.spawn(H.cmd("exit", "0"))):wait(1e17)
      assert.are.equal(0, r.code)
    end)

    it("leaves nothing behind when a wait times out, polled in a loop", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30"), { stdout = "null" }))
      local function grown(poll)
        poll(100)  -- warm up
        collectgarbage()
        collectgarbage()
        local before = collectgarbage("count")
        poll(2000)
        collectgarbage()
        collectgarbage()
        return collectgarbage("count") - before
      end
      local function poll(n) for _ = 1, n do assert.is_nil(p:wait(0)) end end
      -- A leaked waiter costs about 240 bytes: 2000 of them, some 480 KB.
      local kb = grown(poll)
      assert.is_true(kb < 100, ("plain waits kept %.0f KB"):format(kb))
      kb = grown(function(n) pm.task(poll, n):wait() end)
      assert.is_true(kb < 100, ("waits in a task kept %.0f KB"):format(kb))
      p:kill("KILL")
      assert.are.equal("KILL", p:wait().signal)
    end)

    it("calls on_exit with the Result before wait returns", function()
      local seen
      local p = assert(pm.spawn(H.cmd("exit", "4"), { on_exit = function(r) seen = r end }))
      local r = p:wait()
      assert.are.equal(r, seen)
      assert.are.equal(4, seen.code)
    end)

    it("runs on_exit from the loop without any wait", function()
      local code
      pm.spawn(H.cmd("exit", "5"), { on_exit = function(r) code = r.code end })
      pm.loop()
      assert.are.equal(5, code)
    end)
  end)

  describe("options", function()
    it("takes math.huge as 'never' for timeout, idle_timeout and kill_grace", function()
      local r = pm.run(H.cmd("sleep", "0.2"), { timeout = math.huge, idle_timeout = 1e300,
        kill_grace = math.huge })
      assert.are.equal("exit", r.reason)
      assert.is_true(r.ok)
    end)

    it("runs in cwd", function()
      local dir = H.tmpdir()
      local r = pm.run(H.cmd("pwd"), { cwd = dir })
      assert.are.equal(dir .. "\n", r.stdout)
      os.remove(dir)
    end)

    it("merges env onto the environment and removes false entries", function()
      local r = pm.run(H.cmd("env", "PM_A", "HOME", "PM_LUA"),
        { env = { PM_A = "1", HOME = false, PM_LUA = 42 } })
      assert.are.equal("PM_A=1\nHOME unset\nPM_LUA=42\n", r.stdout)
    end)

    it("starts from an empty environment with clear_env", function()
      local r = pm.run(H.cmd("env", "PM_A", "HOME"), { env = { PM_A = "x" }, clear_env = true })
      assert.are.equal("PM_A=x\nHOME unset\n", r.stdout)
    end)

    it("searches the child's PATH when env sets one", function()
      local dir = H.tmpdir()
      local f = assert(io.open(dir .. "/pm-hello", "w"))
      f:write("#!/bin/sh\necho hello from path\n")
      f:close()
      os.execute("chmod +x " .. dir .. "/pm-hello")
      local r = assert(pm.run({ "pm-hello" }, { env = { PATH = dir .. ":/usr/bin:/bin" } }))
      assert.are.equal("hello from path\n", r.stdout)
      os.execute("rm -r " .. dir)
    end)

    it("runs a command line with shell = true", function()
      local r = pm.run("echo $((6 * 7)) | cat", { shell = true })
      assert.are.equal("42\n", r.stdout)
    end)

    it("writes input to stdin and closes it", function()
      local r = pm.run(H.cmd("cat"), { input = "hello\0world" })
      assert.are.equal("hello\0world", r.stdout)
      assert.are.equal("11\n", r.stderr)
    end)

    it("takes input as data, never as a mode: \"pipe\", \"null\" and \"inherit\" too", function()
      for _, data in ipairs({ "pipe", "null", "inherit", "" }) do
        local r = pm.run(H.cmd("cat"), { input = data })
        assert.are.equal(data, r.stdout)
        assert.are.equal(#data .. "\n", r.stderr)
      end
    end)

    it("gives EOF on stdin by default (null)", function()
      local r = pm.run(H.cmd("cat"))
      assert.are.equal("", r.stdout)
      assert.are.equal("0\n", r.stderr)
    end)

    it("streams stdin through a pipe with write and close_stdin", function()
      local p = assert(pm.spawn(H.cmd("cat"), { stdin = "pipe" }))
      assert.is_true(p:write("a"))
      assert.is_true(p:write(("b"):rep(200000)))
      assert.is_true(p:close_stdin())
      assert.is_true(p:close_stdin())  -- idempotent
      local r = p:wait()
      assert.are.equal("a" .. ("b"):rep(200000), r.stdout)
    end)

    it("writes output to files, truncating or appending", function()
      local dir = H.tmpdir()
      local path = dir .. "/out.log"
      pm.run(H.cmd("echo", "one"), { stdout = { file = path } })
      pm.run(H.cmd("echo", "two"), { stdout = { file = path, append = true } })
      local r = pm.run(H.cmd("exit", "0"), { stdout = { file = path, append = true }, stderr = "null" })
      assert.are.equal("one\ntwo\nout\n", H.read_file(path))
      assert.is_nil(r.stdout)
      assert.is_nil(r.stderr)
      pm.run(H.cmd("echo", "three"), { stdout = { file = path } })
      assert.are.equal("three\n", H.read_file(path))
      os.execute("rm -r " .. dir)
    end)

    it("reports a file that cannot be opened as a failure", function()
      local p, msg, code = pm.spawn(H.cmd("echo"), { stdout = { file = "/nonexistent/dir/x" } })
      assert.is_nil(p)
      assert.are.equal("ENOENT", code)
      assert.matches("stdout file '/nonexistent/dir/x'", msg, 1, true)
    end)

    it("reads stdin from a file", function()
      local path = os.tmpname()
      local f = io.open(path, "w")
      f:write("from file")
      f:close()
      assert.are.equal("from file", pm.run(H.cmd("cat"), { stdin = { file = path } }).stdout)
      os.remove(path)
    end)

    it("gives the child only descriptors 0, 1 and 2", function()
      local leak = io.open("/dev/null")  -- a descriptor without close-on-exec
      local r = pm.run({ "sh", "-c", "ls /proc/$$/fd" })
      leak:close()
      assert.are.same({ "0", "1", "2" }, (function()
        local t = {}
        for n in r.stdout:gmatch("%d+") do t[#t + 1] = n end
        return t
      end)())
    end)

    it("puts every child in its own process group", function()
      local r = pm.run({ "sh", "-c", "ps -o pgid= -p $$ 2>/dev/null || cut -d' ' -f5 /proc/$$/stat" })
      local p = r.pid
      assert.are.equal(tostring(p), r.stdout:match("%d+"))
    end)

    it("lists running children in active()", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30")))
      local found = false
      for _, q in ipairs(pm.active()) do found = found or q == p end
      assert.is_true(found)
      p:kill("KILL")
      p:wait()
      for _, q in ipairs(pm.active()) do assert.are_not.equal(p, q) end
    end)
  end)

  describe("detached", function()
    it("outlives the loop, with null stdio, in its own session", function()
      local dir = H.tmpdir()
      local out = dir .. "/d.out"
      local p = assert(pm.spawn({ "sh", "-c", "sleep 0.3; ls /proc/$$/fd; cut -d' ' -f6 /proc/$$/stat" },
        { detached = true, stdout = { file = out } }))
      pm.loop()  -- does not wait for the detached child
      assert.is_true(p:running())
      local r = p:wait(5)  -- but an explicit wait does
      assert.are.equal(0, r.code)
      local lines = H.read_file(out)
      assert.are.equal("0\n1\n2\n" .. p.pid .. "\n", lines)
      os.execute("rm -r " .. dir)
    end)

    --- Runs `waits` after a detached `sleep 60` p was started, then the
    --- loop: the script must end (the child runs on), or the waits left
    --- something that keeps the loop alive.
    local function ends_after(waits, what)
      local code = [[
        local pm = require "procmon"
        local p = assert(pm.spawn({ "sleep", "60" }, { detached = true }))
        print(p.pid)
        io.stdout:flush()
      ]] .. waits .. "\npm.loop()"
      local r = assert(pm.run({ H.lua, "-e", code }, { timeout = 15 }))
      local pid = tonumber(r.stdout:match("%d+"))
      H.kill_group(pid)
      assert.is_number(pid, r.stderr)
      assert.are.equal("exit", r.reason, what .. " kept the loop alive")
      assert.are.equal(0, r.code, r.stderr)
    end

    it("stops keeping the loop alive when a wait on it timed out", function()
      ends_after([[
        assert(p:wait(0.05) == nil)
        assert(p:wait(0.05) == nil)
      ]], "the timed-out wait")
    end)

    it("stops keeping the loop alive when a wait on it ended in an error", function()
      -- another child's on_exit raises inside the wait: the wait is over,
      -- and nobody waits for the detached child any more
      ends_after([[
        pm.spawn({ "true" }, { on_exit = function() error("boom") end })
        assert(not pcall(p.wait, p))
        pm.spawn({ "true" }, { on_exit = function() error("boom") end })
        assert(not pcall(p.wait, p, 30))
      ]], "the failed wait")
    end)

    it("refuses pipes", function()
      assert.error_matches(function() pm.spawn(H.cmd("echo"), { detached = true, stdout = "pipe" }) end,
        "detached process takes only")
    end)
  end)

  describe("the after_each check", function()
    it("fails on a leaked running child, and kills it", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30")))
      local ok, err = pcall(H.assert_no_live_handles)
      assert.is_false(ok, "a leaked child passed the check")
      assert.matches("running children", tostring(err and err.message or err))
      assert.is_false(p:running())
    end)
  end)

  describe("to-be-closed", function()
    it("kills and reaps a running process when leaving scope", function()
      local pid
      do
        local p <close> = assert(pm.spawn(H.cmd("sleep", "30")))
        pid = p.pid
      end
      pm.loop()
      assert.falsy(H.exists(pid))
    end)
  end)
end)
