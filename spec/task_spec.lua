-- Concurrency: tasks yield to the loop, run_all honours its limit.
local pm = require "procmon"
local H = require "helpers"

describe("tasks", function()
  after_each(H.assert_no_live_handles)

  it("run two sleeps concurrently", function()
    -- Each sleep records when it ran; concurrent means their spans
    -- overlap (serial ones would not), whatever the machine's load.
    local function sleeper(name)
      return pm.task(function()
        local t0 = pm.time()
        pm.sleep(0.3)
        return name, t0, pm.time()
      end)
    end
    local a, b = sleeper("a"), sleeper("b")
    local na, a0, a1 = a:wait()
    local nb, b0, b1 = b:wait()
    assert.are.same({ "a", "b" }, { na, nb })
    assert.is_true(a1 - a0 >= 0.29 and b1 - b0 >= 0.29, "a sleep ended early")
    assert.is_true(b0 < a1 and a0 < b1, "the sleeps ran one after the other")
  end)

  it("sleeps for ever with a huge number of seconds (no overflow)", function()
    local code = [[
      local pm = require "procmon"
      pm.task(function() pm.sleep(1e17); io.write("woke ") end)
      pm.task(function() pm.sleep(math.huge); io.write("woke ") end)
      pm.sleep(0.2)
      io.write("alive")
      io.stdout:flush()
      pm.loop()
    ]]
    local r = pm.run({ H.lua, "-e", code }, { timeout = 1 })
    assert.are.equal("alive", r.stdout, r.stderr)
    assert.are.equal("timeout", r.reason)
  end)

  it("close a failed task's <close> variables", function()
    local closed = false
    local ok, err = pcall(function()
      local t = pm.task(function()
        local guard <close> = setmetatable({}, { __close = function() closed = true end })
        pm.sleep(0)
        error("task failed")
      end)
      t:wait()
    end)
    assert.is_false(ok)
    assert.matches("task failed", err)
    assert.is_true(closed)
  end)

  it("run two processes concurrently with wait inside tasks", function()
    local ts = {}
    for i = 1, 2 do ts[i] = pm.task(function() return pm.run(H.cmd("sleep", "0.3")) end) end
    local a, b = ts[1]:wait(), ts[2]:wait()
    assert.are.equal(0, a.code)
    assert.are.equal(0, b.code)
    -- Their lifetimes overlap: the second started before the first ended.
    assert.is_true(b.started_at < a.ended_at and a.started_at < b.ended_at)
  end)

  it("start at once and return every value", function()
    local order = {}
    local t = pm.task(function(x, y)
      order[#order + 1] = "started"
      pm.sleep(0)
      return x + y, nil, "z"
    end, 1, 2)
    order[#order + 1] = "after task()"
    assert.are.same({ "started", "after task()" }, order)
    local a, b, c = t:wait()
    assert.are.same({ 3, nil, "z" }, { a, b, c })
    assert.is_true(t:done())
  end)

  it("can wait for other tasks", function()
    local inner = pm.task(function() pm.sleep(0.05); return 7 end)
    local outer = pm.task(function() return inner:wait() * 6 end)
    assert.are.equal(42, outer:wait())
  end)

  it("are driven by loop() under a stock interpreter too", function()
    local done = false
    pm.task(function() pm.sleep(0.05); done = true end)
    pm.loop()
    assert.is_true(done)
  end)

  it("times a wait out inside a task", function()
    local t = pm.task(function()
      local p = pm.spawn(H.cmd("sleep", "30"))
      local r, _, code = p:wait(0.05)
      p:kill("KILL")
      p:wait()
      return r, code
    end)
    local r, code = t:wait()
    assert.is_nil(r)
    assert.are.equal("ETIMEDOUT", code)
  end)
end)

describe("run_all", function()
  after_each(H.assert_no_live_handles)

  it("returns results in input order", function()
    local jobs = {}
    for i = 1, 6 do jobs[i] = { H.cmd("echo", tostring(i)) } end
    local rs = pm.run_all(jobs, { concurrency = 3 })
    for i = 1, 6 do assert.are.equal(i .. "\n", rs[i].stdout) end
  end)

  it("never runs more than the limit at once", function()
    local jobs, peak = {}, 0
    for i = 1, 8 do jobs[i] = { { "sleep", "0.1" } } end
    local sampler = pm.task(function()
      for _ = 1, 40 do
        peak = math.max(peak, #pm.active())
        pm.sleep(0.01)
      end
    end)
    local rs = pm.run_all(jobs, { concurrency = 3 })
    sampler:wait()
    assert.are.equal(8, #rs)
    assert.are.equal(3, peak)
  end)

  it("passes per-job options and still calls their on_exit", function()
    local seen
    local rs = pm.run_all({ { H.cmd("cat"), { input = "in", on_exit = function(r) seen = r.stdout end } } })
    assert.are.equal("in", rs[1].stdout)
    assert.are.equal("in", seen)
  end)

  it("returns an empty list for no jobs", function()
    assert.are.same({}, pm.run_all({}))
  end)
end)
