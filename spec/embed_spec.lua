-- procmon in a C host of its own (spec/embed/pm_embed.c): what a Lua
-- script cannot provoke. Each case is a run of the host; it exits 0 or
-- says what went wrong.
local pm = require "procmon"
local H = require "helpers"

local host = H.build .. "/pm_embed"
local built = io.open(host)
if built then built:close() end

local function embed(case, env)
  return assert(pm.run({ host, case }, { env = env, timeout = 90 }))
end

describe("embedded in a C host", function()
  after_each(H.assert_no_live_handles)

  local cases = {
    { "foreign", "leaves the host's own handles alone at lua_close, and returns" },
    { "pidfd", "closes the pidfd of a detached child still alive at lua_close" },
    { "threads", "streams lines on two threads at once without mixing their bytes" },
    { "oom", "reports an allocation failure while building the Result as the wait's error" },
    { "echild", "reports reason 'unknown', not exit 0, when the host ignores SIGCHLD (ECHILD)" },
  }
  for _, c in ipairs(cases) do
    it(c[2], function()
      assert.truthy(built, "pm_embed not built (make builds it)")
      local r = embed(c[1])
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
    end)
  end

  for _, call in ipairs({ "uv_poll_start", "uv_pipe_open", "uv_read_start", "uv_signal_start" }) do
    it("fails the spawn cleanly when " .. call .. " fails, and spawns again", function()
      assert.truthy(built, "pm_embed not built (make builds it)")
      local env = { PM_FAULT = call }
      if call == "uv_signal_start" then env.PROCMON_NO_PIDFD = "1" end
      local r = embed("fault", env)
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("", r.stderr)
    end)
  end
end)
