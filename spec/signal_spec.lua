-- Signals to procrun, seen from outside: each spec starts procrun (as a
-- subprocess, whichever interpreter runs the suite) on a small script,
-- signals it once the script said "ready", and checks its exit status,
-- what the script saw, and the children it leaves (none).
local pm = require "procmon"
local H = require "helpers"

local dir, nscripts = nil, 0

-- Prelude of every script: ready() tells the spec to go on, child(p)
-- reports a child's pid (its process group) so that the spec can check
-- the group is gone, say(...) is a line on stderr the spec collects.
local PRELUDE = [[
local pm = require "procmon"
local function say(...)
  io.stderr:write(table.concat({ ... }, " "), "\n")
  io.stderr:flush()
end
local function ready() say("ready") end
local function child(p) say("child", p.pid); return p end
]]

local function script(body)
  nscripts = nscripts + 1
  local path = dir .. "/s" .. nscripts .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(PRELUDE, body)
  f:close()
  return path
end

--- Starts `interp` (procrun by default) on `body`; returns once the script
--- said "ready" (or ended). run.lines: its stderr lines; run.children:
--- the pids it reported; run.has(line): whether it said that line.
local function start(body, interp, stdin)
  local run = { lines = {}, children = {} }
  run.p = assert(pm.spawn({ interp or H.procrun, script(body) }, {
    stdin = stdin,
    lines = true,
    timeout = 30,
    on_stderr = function(line)
      run.lines[#run.lines + 1] = line
      local pid = line:match("^child (%d+)$")
      if pid then run.children[#run.children + 1] = tonumber(pid) end
    end,
  }))
  function run.has(line)
    for _, l in ipairs(run.lines) do if l == line then return true end end
    return false
  end
  function run.stderr() return table.concat(run.lines, "\n") end
  assert.truthy(H.eventually(function() return run.has("ready") or not run.p:running() end, 10))
  assert.is_true(run.has("ready"), "no ready line; stderr: " .. run.stderr())
  return run
end

--- Waits for `line` on the run's stderr (true), or false after a while.
local function said(run, line)
  return H.eventually(function() return run.has(line) or not run.p:running() end, 10) and run.has(line)
end

local function cleanup(run)
  for _, pid in ipairs(run.children) do H.kill_group(pid) end
  if run.p:running() then run.p:kill("KILL") end
end

local function assert_children_gone(run)
  for _, pid in ipairs(run.children) do assert.are.same({}, H.leftovers(pid)) end
end

describe("signals to procrun", function()
  setup(function() dir = H.tmpdir() end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)
  after_each(H.assert_no_live_handles)

  describe("reach Lua wherever it runs", function()
    local busy = {
      { "a task started by the main chunk", [[
        pm.task(function() ready(); while true do end end)
      ]] },
      { "a task resumed by the loop", [[
        pm.task(function() pm.sleep(0.01); ready(); while true do end end)
      ]] },
      { "a coroutine.wrap inside a task", [[
        pm.task(function()
          pm.sleep(0.01)
          coroutine.wrap(function() ready(); while true do end end)()
        end)
      ]] },
      { "a coroutine.resume of the main chunk", [[
        local co = coroutine.create(function() ready(); while true do end end)
        coroutine.resume(co)
      ]] },
    }
    for _, case in ipairs(busy) do
      local where, body = case[1], case[2]
      it("stop a busy loop in " .. where, function()
        local run = start("child(pm.spawn({ 'sleep', '100' }))\n" .. body)
        finally(function() cleanup(run) end)
        run.p:kill("TERM")
        local r = run.p:wait()
        assert.are.equal(143, r.code, run.stderr())
        assert_children_gone(run)
      end)
    end
  end)

  describe("cannot be cancelled by pcall", function()
    it("lets the script see it, then exits 128+signal", function()
      local run = start([[
        local p = child(pm.spawn({ "sleep", "40" }))
        say("before", tostring(pm.interrupted()))
        do
          local guard <close> = setmetatable({}, { __close = function() say("closed") end })
          ready()
          local ok, err = pcall(p.wait, p)
          say("caught", tostring(ok), tostring(err):match("interrupted by SIGTERM") or err)
          say("after", tostring(pm.interrupted()))
        end
        say("end of chunk")
      ]])
      finally(function() cleanup(run) end)
      run.p:kill("TERM")
      local r = run.p:wait()
      assert.are.equal(143, r.code, run.stderr())
      assert.is_true(run.has("before nil"))
      assert.is_true(run.has("caught false interrupted by SIGTERM"), run.stderr())
      assert.is_true(run.has("after TERM"), run.stderr())
      assert.is_true(run.has("closed"), run.stderr())
      assert.is_true(run.has("end of chunk"), run.stderr())
      assert_children_gone(run)
    end)

    it("is raised at the script's line", function()
      local run = start([[
        local p = child(pm.spawn({ "sleep", "40" }))
        ready()
        local _, blocked = pcall(function()
          p:wait()  -- line 11 of the script
        end)
        local _, again = pcall(function()
          pm.sleep(1)  -- line 14
        end)
        say(blocked:match("^.-:%d+:") or blocked)
        say(again:match("^.-:%d+:") or again)
      ]])
      finally(function() cleanup(run) end)
      run.p:kill("TERM")
      assert.are.equal(143, run.p:wait().code, run.stderr())
      assert.is_truthy(run.lines[3] and run.lines[3]:match("s%d+%.lua:11:$"), run.stderr())
      assert.is_truthy(run.lines[4] and run.lines[4]:match("s%d+%.lua:14:$"), run.stderr())
    end)

    it("reaches the tasks waiting in a blocking call: their cleanup runs", function()
      local run = start([[
        child(pm.spawn({ "sleep", "40" }))
        local function task(name)
          return pm.task(function()
            local guard <close> = setmetatable({}, { __close = function() say(name, "closed") end })
            local ok, err = pcall(pm.sleep, 30)
            say(name, "caught", tostring(err):match("interrupted by SIGTERM") or tostring(err))
            pm.sleep(1)  -- raises again
            say(name, "went on")
          end)
        end
        local a = task("a")
        local b = task("b")
        pm.task(function() a:wait(); say("c woken") end)
        ready()
        b:wait()
      ]])
      finally(function() cleanup(run) end)
      run.p:kill("TERM")
      assert.are.equal(143, run.p:wait().code, run.stderr())
      for _, name in ipairs({ "a", "b" }) do
        assert.is_true(run.has(name .. " caught interrupted by SIGTERM"), run.stderr())
        assert.is_true(run.has(name .. " closed"), run.stderr())
        assert.is_false(run.has(name .. " went on"), run.stderr())
      end
      assert.is_false(run.has("c woken"), run.stderr())
      assert_children_gone(run)
    end)

    it("starts no child after it: a retry loop around pcall ends", function()
      local run = start([[
        for i = 1, 5 do
          local p = child(pm.spawn({ "sleep", "40" }))
          if i == 1 then ready() end
          say("try", i, tostring(select(2, pcall(p.wait, p))))
        end
        say("gave up")
      ]])
      finally(function() cleanup(run) end)
      run.p:kill("INT")
      local r = run.p:wait()
      assert.are.equal(130, r.code, run.stderr())
      assert.are.equal(1, #run.children, "children started after the signal: " .. run.stderr())
      assert.is_false(run.has("gave up"))
      assert_children_gone(run)
    end)

    it("raises again from every blocking or starting call", function()
      local run = start([[
        local p = child(pm.spawn({ "sleep", "40" }))
        ready()
        print(pcall(p.wait, p))
        local calls = {
          spawn = function() return pm.spawn({ "true" }) end,
          run = function() return pm.run({ "true" }) end,
          run_all = function() return pm.run_all({ { { "true" } } }) end,
          sleep = function() return pm.sleep(0) end,
          wait = function() return p:wait() end,
          loop = function() return pm.loop() end,
          task_wait = function() return pm.task(function() end):wait() end,
        }
        for _, name in ipairs({ "spawn", "run", "run_all", "sleep", "wait", "loop", "task_wait" }) do
          local ok, err = pcall(calls[name])
          say(name, tostring(ok), tostring(err):match("interrupted by SIGHUP") or tostring(err))
        end
        local t = pm.task(function() return pcall(pm.sleep, 1) end)
        say("in a task", tostring(t:done()))
        os.exit(0)
      ]])
      finally(function() cleanup(run) end)
      run.p:kill("HUP")
      local r = run.p:wait()
      assert.are.equal(129, r.code, run.stderr())
      for _, name in ipairs({ "spawn", "run", "run_all", "sleep", "wait", "loop", "task_wait" }) do
        assert.is_true(run.has(name .. " false interrupted by SIGHUP"), name .. ": " .. run.stderr())
      end
      assert.is_true(run.has("in a task true"), run.stderr())
      assert.are.equal(1, #run.children)
      assert_children_gone(run)
    end)

    it("keeps the exit status 128+signal through os.exit(n)", function()
      for _, close in ipairs({ "false", "true" }) do
        local run = start(([[
          local p = child(pm.spawn({ "sleep", "40" }))
          ready()
          pcall(p.wait, p)
          os.exit(0, %s)
        ]]):format(close))
        finally(function() cleanup(run) end)
        run.p:kill("TERM")
        local r = run.p:wait()
        assert.are.equal(143, r.code, run.stderr())
        assert_children_gone(run)
      end
    end)

    it("stops a script that catches it and keeps running Lua", function()
      local run = start([[
        child(pm.spawn({ "sleep", "100" }))
        ready()
        while true do
          pcall(function() while true do end end)
        end
      ]])
      finally(function() cleanup(run) end)
      local t0 = pm.clock()
      run.p:kill("TERM")
      local r = run.p:wait()
      assert.are.equal(143, r.code, run.stderr())
      assert.is_true(pm.clock() - t0 < 20, "procrun took too long to stop")
      assert_children_gone(run)
    end)
  end)

  describe("a second signal", function()
    -- A child that ignores TERM, with a long kill_grace; ready() once the
    -- trap holds (the shell said "armed").
    local STUBBORN = [[
      local armed = false
      local p = child(pm.spawn("trap '' TERM; echo armed; exec sleep 100",
        { shell = true, kill_grace = 60, lines = true, on_stdout = function() armed = true end }))
      while not armed do pm.sleep(0.01) end
      ready()
    ]]

    it("ends the kill grace at once: the children get SIGKILL", function()
      local run = start(STUBBORN .. "p:wait()")
      finally(function() cleanup(run) end)
      run.p:kill("TERM")
      -- procrun now waits for a child that ignores TERM (kill_grace 60 s).
      pm.sleep(0.3)
      assert.is_true(run.p:running(), "procrun did not wait for its child's kill_grace")
      assert.is_true(#H.group_members(run.children[1]) >= 1)
      local t0 = pm.clock()
      run.p:kill("TERM")
      local r = run.p:wait()
      assert.are.equal(143, r.code, run.stderr())
      assert.is_true(pm.clock() - t0 < 20, "the second signal did not end the grace")
      assert_children_gone(run)
    end)

    it("ends Lua cleanup that does not end, and the kill grace", function()
      local run = start(STUBBORN .. [[
        pcall(function() while true do end end)
        say("cleanup")
        while true do end
      ]])
      finally(function() cleanup(run) end)
      run.p:kill("TERM")
      assert.is_true(said(run, "cleanup"), run.stderr())
      local t0 = pm.clock()
      run.p:kill("INT")
      local r = run.p:wait()
      assert.are.equal(143, r.code, run.stderr())
      assert.is_true(pm.clock() - t0 < 20, "the second signal did not end procrun")
      assert_children_gone(run)
    end)
  end)

  describe("while procrun closes the Lua state", function()
    -- A finalizer that runs at lua_close, once the loop is idle.
    local SLOW_GC = [[
      keep = setmetatable({}, { __gc = function()
        say("in __gc")
        local t = os.clock() + %s
        while os.clock() < t do end
        say("__gc done")
      end })
      ready()
    ]]

    it("does not crash it; the exit status is 128+signal", function()
      local run = start(SLOW_GC:format("1.5"))
      finally(function() cleanup(run) end)
      assert.is_true(said(run, "in __gc"), run.stderr())
      run.p:kill("TERM")
      local r = run.p:wait()
      assert.is_nil(r.signal, "procrun died of SIG" .. tostring(r.signal))
      assert.are.equal(143, r.code, run.stderr())
      assert_children_gone(run)
    end)

    it("ends a finalizer that never returns 2 s after a single signal", function()
      local run = start(SLOW_GC:format("math.huge"))
      finally(function() cleanup(run) end)
      assert.is_true(said(run, "in __gc"), run.stderr())
      run.p:kill("TERM")
      local r = run.p:wait(20)
      assert.is_truthy(r, "one signal did not end a finalizer that never returns")
      assert.is_nil(r.signal, "procrun died of SIG" .. tostring(r.signal))
      assert.are.equal(143, r.code, run.stderr())
      assert_children_gone(run)
    end)

    it("bounds it even with SIGALRM blocked, and keeps what the script printed", function()
      local wrapper = dir .. "/alarm-blocked"
      local f = assert(io.open(wrapper, "w"))
      f:write("#!/bin/sh\nexec perl -MPOSIX -e 'sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGALRM));",
        " exec @ARGV or die' ", H.q(H.procrun), ' "$@"\n')
      f:close()
      assert.is_true(os.execute("chmod +x " .. H.q(wrapper)))
      local run = start('io.write("printed before the close")\n' .. SLOW_GC:format("math.huge"), wrapper)
      finally(function() cleanup(run) end)
      assert.is_true(said(run, "in __gc"), run.stderr())
      run.p:kill("TERM")
      local r = run.p:wait(20)
      assert.is_truthy(r, "one signal did not end the finalizer (SIGALRM blocked)")
      assert.are.equal(143, r.code, run.stderr())
      assert.are.equal("printed before the close", r.stdout)
    end)

    it("ends a finalizer that never returns at the second signal", function()
      local run = start(SLOW_GC:format("math.huge"))
      finally(function() cleanup(run) end)
      assert.is_true(said(run, "in __gc"), run.stderr())
      run.p:kill("TERM")
      pm.sleep(0.2)
      run.p:kill("TERM")
      local r = run.p:wait()
      assert.is_nil(r.signal, "procrun died of SIG" .. tostring(r.signal))
      assert.are.equal(143, r.code, run.stderr())
      assert.is_false(run.has("__gc done"))
      assert_children_gone(run)
    end)
  end)

  it("end a wait for a cache lock another process holds", function()
    local cdir = H.tmpdir()
    finally(function() os.execute("rm -rf '" .. cdir .. "'") end)
    local c = assert(pm.cache.open(cdir))
    local r, run
    c:update("k", function()
      run = start(([[
        local c = assert(pm.cache.open(%q))
        ready()
        c:update("k", function() say("got the lock") end)
      ]]):format(cdir))
      pm.sleep(0.3)  -- it waits for the lock now
      run.p:kill("TERM")
      r = run.p:wait()
      return 1
    end)
    assert.are.equal(143, r.code, run.stderr())
    assert.is_false(run.has("got the lock"))
  end)

  it("interrupts a blocking read: no SA_RESTART", function()
    local run = start([[
      ready()
      io.read("a")  -- stdin stays open: only EINTR ends the read
    ]], nil, "pipe")
    finally(function() cleanup(run) end)
    run.p:kill("TERM")
    local r = run.p:wait()
    assert.are.equal(143, r.code, run.stderr())
  end)

  it("pm.interrupted() is nil when no stop signal arrived", function()
    assert.is_nil(pm.interrupted())
  end)

  -- An ASan build's procmon.so cannot load into lua5.4.
  local cache = io.open(H.build .. "/CMakeCache.txt")
  local sanitized = cache and cache:read("a"):find("PM_SANITIZE:BOOL=ON", 1, true)
  if cache then cache:close() end
  local stock_it = sanitized and pending or it

  stock_it("under a stock lua5.4: the module installs no handler: TERM keeps its default action", function()
    local run = start("ready(); while true do end", "lua5.4")
    finally(function() cleanup(run) end)
    run.p:kill("TERM")
    local r = run.p:wait()
    assert.are.equal("TERM", r.signal)
  end)
end)

describe("pm.clock", function()
  after_each(H.assert_no_live_handles)

  it("is a monotonic clock in seconds, with fractions", function()
    local a = pm.clock()
    assert.are.equal("float", math.type(a))
    pm.sleep(0.05)
    local b = pm.clock()
    assert.is_true(b - a >= 0.04 and b - a < 5, "elapsed " .. (b - a))
    -- Not the wall clock: monotonic time counts from boot.
    assert.is_true(math.abs(pm.time() - b) > 1e6)
  end)
end)
