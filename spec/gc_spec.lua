-- Ownership: dropped processes are still reaped, <close> kills, __gc and
-- __close are idempotent, and no handle outlives its object.
local pm = require "procmon"
local H = require "helpers"

describe("gc", function()
  after_each(H.assert_no_live_handles)

  it("reaps a dropped Process after collectgarbage()", function()
    local pid
    do
      local p = assert(pm.spawn(H.cmd("exit", "0")))
      pid = p.pid
    end
    collectgarbage()
    collectgarbage()
    pm.loop()
    assert.falsy(H.exists(pid), "child left as a zombie")
    assert.are.equal(0, pm._handles())
  end)

  it("keeps a dropped running Process alive and calls its on_exit", function()
    local code
    do
      pm.spawn(H.cmd("sleep", "0.2"), { on_exit = function(r) code = r.code end })
    end
    collectgarbage()
    collectgarbage()
    pm.loop()
    assert.are.equal(0, code)
  end)

  it("reaps many dropped processes", function()
    local pids = {}
    for i = 1, 50 do pids[i] = assert(pm.spawn({ "true" })).pid end
    collectgarbage()
    pm.loop()
    for _, pid in ipairs(pids) do assert.falsy(H.exists(pid)) end
  end)

  it("<close> on a finished process does nothing", function()
    local r
    do
      local p <close> = assert(pm.spawn(H.cmd("exit", "2")))
      r = p:wait()
    end
    assert.are.equal(2, r.code)
  end)

  it("__close twice and then __gc are harmless", function()
    local p = assert(pm.spawn(H.cmd("sleep", "30")))
    local mt = getmetatable(p)
    mt.__close(p, nil)
    mt.__close(p, nil)
    local r = p:wait()
    assert.are.equal("killed", r.reason)
    mt.__gc(p)
    assert.are.equal(r, p:wait())
  end)

  it("drops timers once they fired or stopped", function()
    local fired = 0
    local t = pm._timer(0.01, function() fired = fired + 1 end)
    assert.is_true(t:active())
    assert.are.equal(1, pm._handles())
    pm.loop()  -- returns once the timer fired and its handle closed
    assert.are.equal(1, fired)
    assert.is_false(t:active())
    assert.is_false(t:stop())
    assert.are.equal(0, pm._handles())

    local u = pm._timer(10, function() fired = fired + 1 end)
    assert.is_true(u:stop())
    assert.is_false(u:stop())
    assert.is_false(u:active())
    pm.loop()  -- at once: a stopped timer holds the loop no longer
    assert.are.equal(0, pm._handles())
    assert.are.equal(1, fired)

    -- Nothing anchors them any more: dropped, they are collected.
    local weak = setmetatable({ t, u }, { __mode = "v" })
    t, u = nil, nil
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  it("anchors an armed timer until it fires", function()
    local fired = false
    local weak = setmetatable({ pm._timer(0.01, function() fired = true end) }, { __mode = "v" })
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(weak[1])
    pm.loop()
    assert.is_true(fired)
  end)
end)
