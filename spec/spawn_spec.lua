-- The spawn path and the process around it: children die with their owner
-- (kill -9 included), see the descriptor limit the owner started with, and
-- exit statuses survive a parent that ignores SIGCHLD. Each owner runs
-- under both interpreters, whichever one runs the suite.
local pm = require "procmon"
local H = require "helpers"

local INTERPS = { { "procrun", H.procrun }, { "lua5.4", H.lua54 } }

local dir

local function script(name, src)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  return path
end

--- Dead or a zombie waiting for init: either way no longer running.
local function gone(pid)
  local st = H.proc_state(pid)
  return st == nil or st == "Z"
end

describe("spawn", function()
  setup(function() dir = H.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. dir) end)
  after_each(H.assert_no_live_handles)

  describe("an owner killed with SIGKILL", function()
    local OWNER = [[
      local pm = require "procmon"
      local p = assert(pm.spawn({ "sleep", "100" }))
      local d = assert(pm.spawn({ "sleep", "100" }, { detached = true }))
      io.stdout:write(p.pid, " ", d.pid, "\n")
      io.stdout:flush()
      pm.sleep(100)
    ]]

    for _, interp in ipairs(INTERPS) do
      it("takes its children along, not its detached ones (" .. interp[1] .. ")", function()
        local pids
        local owner = assert(pm.spawn({ interp[2], script("owner.lua", OWNER) }, {
          lines = true,
          on_stdout = function(l)
            local a, b = l:match("^(%d+) (%d+)$")
            if a then pids = { tonumber(a), tonumber(b) } end
          end,
        }))
        finally(function()
          if pids then H.kill_group(pids[1]); H.kill_group(pids[2]) end
        end)
        assert.is_truthy(H.eventually(function() return pids end, 10), "the owner did not start")
        assert.is_true(owner:kill("KILL"))
        assert.are.equal("KILL", owner:wait().signal)
        assert.is_true(H.eventually(function() return gone(pids[1]) end, 5),
          "the child outlived its owner")
        assert.is_false(gone(pids[2]), "the detached child died with its owner")
      end)
    end
  end)

  describe("under a parent that ignores SIGCHLD", function()
    -- bash passes an ignored SIGCHLD on to what it execs (dash does not).
    local IGNORE = 'trap "" CHLD; exec "$0" "$@"'
    local STATUSES = [[
      local pm = require "procmon"
      local seen, out = {}, {}
      for i = 1, 20 do
        local r, err = pm.run({ "sh", "-c", "exit 3" })
        seen[(r and ("%s %s %s"):format(r.code, r.ok, r.reason) or err)] = true
      end
      for k in pairs(seen) do out[#out + 1] = k end
      io.stdout:write(table.concat(out, "\n"))
    ]]

    setup(function()
      local r = pm.run({ "sh", "-c", "command -v bash" })
      if not r.ok then return end
      r = assert(pm.run({ "bash", "-c", IGNORE, "cat", "/proc/self/status" }))
      local ign = tonumber(r.stdout:match("SigIgn:%s*(%x+)"), 16)
      assert.are.equal(1, (ign >> 16) & 1, "bash did not pass SIG_IGN for SIGCHLD on")
    end)

    for _, interp in ipairs(INTERPS) do
      it("still reports exit codes, and every spawn succeeds (" .. interp[1] .. ")", function()
        local r = assert(pm.run({ "bash", "-c", IGNORE, interp[2], script("statuses.lua", STATUSES) },
                                { timeout = 30 }))
        assert.are.equal("", r.stderr)
        assert.are.equal("3 false exit", r.stdout)
      end)
    end
  end)

  describe("descriptor limit", function()
    -- Run with a soft limit of 256: children (and io.popen) must see 256,
    -- and 100 live children (300 descriptors) must still be possible.
    local LIMITS = [[
      local pm = require "procmon"
      local function ulimit(p) return (p.stdout or p:read("a")):match("%d+") end
      local out = {}
      out[1] = ulimit(pm.run({ "sh", "-c", "ulimit -n" }))
      local f = io.popen("ulimit -n")
      out[2] = ulimit(f)
      f:close()
      local ps = {}
      for i = 1, 100 do ps[i] = assert(pm.spawn({ "sleep", "30" })) end
      out[3] = ulimit(pm.run({ "sh", "-c", "ulimit -n" }))
      for i = 1, 100 do ps[i]:kill("KILL") end
      io.stdout:write(table.concat(out, " "))
    ]]

    for _, interp in ipairs(INTERPS) do
      it("is the one the owner started with, in every child (" .. interp[1] .. ")", function()
        local hard = pm.run({ "sh", "-c", "ulimit -H -n" }).stdout:match("%d+")
        if hard ~= "unlimited" and tonumber(hard) and tonumber(hard) <= 512 then
          pending("the hard descriptor limit is too low to tell")
          return
        end
        local r = assert(pm.run({ "sh", "-c", 'ulimit -S -n 256 && exec "$@"', "sh",
                                  interp[2], script("limits.lua", LIMITS) }, { timeout = 30 }))
        assert.are.equal("", r.stderr)
        assert.are.equal("256 256 256", r.stdout)
      end)
    end
  end)
end)
