-- procmon.monitor: persisted records, liveness (pid and start time), events,
-- restart and keyed policies, across processes.
local pm = require "procmon"
local H = require "helpers"
local json = require "procmon.json"
local policy = require "procmon.policy"
local md = require "procmon.mondir"

local q = H.q

local function read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return (json.decode(s))
end

local function mode(path)
  local p = io.popen("stat -c %a " .. q(path))
  local s = p:read("a"):gsub("%s+$", "")
  p:close()
  return s
end

-- Starts `lua fixture args...` in the background with stdout captured line
-- by line; returns the Process and a function giving the lines so far.
local function background(name, ...)
  local lines = {}
  local p = assert(pm.spawn(H.cmd(name, ...), {
    lines = true, on_stdout = function(l) lines[#lines + 1] = l end,
  }))
  return p, function() return lines end
end

describe("monitor", function()
  local dir, mon

  before_each(function()
    dir = H.tmpdir() .. "/mon"
    mon = assert(pm.monitor { dir = dir })
  end)

  after_each(function()
    H.assert_no_live_handles()
    os.execute("rm -rf " .. q(dir:match("^(.*)/mon$")))
  end)

  describe("records", function()
    it("are JSON files written at start and at end, in private directories", function()
      local p = assert(mon:spawn(H.cmd("exit", "3"), { name = "job" }))
      assert.is_string(p.id)
      assert.is_true(#p.id <= 8)
      local rec = read_json(dir .. "/running/" .. p.id .. ".json")
      assert.are.same({ "running", p.pid, p.pid, "job" }, { rec.status, rec.pid, rec.pgid, rec.name })
      assert.are.same(H.cmd("exit", "3"), rec.cmd)
      assert.are.equal(md.start_time(p.pid), rec.start_time)
      assert.are.equal(select(2, md.self()), rec.owner_start_time)
      assert.are.equal(0, rec.restarts)
      assert.are.equal(json.null, rec.ended_at)
      local r = p:wait()
      assert.are.equal(3, r.code)
      assert.are.equal(p.id, r.id)
      assert.is_nil(io.open(dir .. "/running/" .. p.id .. ".json"))
      rec = read_json(dir .. "/done/" .. p.id .. ".json")
      assert.are.same({ "failed", 3, "exit", "err\n" }, { rec.status, rec.exit_code, rec.reason, rec.stderr })
      assert.is_true(rec.ended_at >= rec.started_at)
      assert.are.equal(700, tonumber(mode(dir)))
      assert.are.equal(700, tonumber(mode(dir .. "/done")))
      assert.are.equal(600, tonumber(mode(dir .. "/done/" .. p.id .. ".json")))
    end)

    it("have every field of the format, null when unknown", function()
      local r = assert(mon:run(H.cmd("exit", "0"), { session_id = "s1", task_id = "t1" }))
      local rec = read_json(dir .. "/done/" .. r.id .. ".json")
      for _, k in ipairs { "id", "pid", "cmd", "name", "cwd", "status", "started_at",
        "ended_at", "exit_code", "signal", "reason", "stderr", "owner_pid", "session_id",
        "task_id", "restarts", "pgid", "start_time", "owner_start_time", "key", "log",
        "expires_at" } do
        assert.is_not_nil(rec[k], k)
      end
      assert.are.same({ "completed", 0, "s1", "t1" }, { rec.status, rec.exit_code, rec.session_id, rec.task_id })
      assert.are.equal(md.cwd(), rec.cwd)
    end)

    it("pass the session and task to the child as PROCESS_* metadata", function()
      local vars = { "env", "PROCESS_PARENT_PID", "PROCESS_SESSION_ID", "PROCESS_TASK_ID", "PROCESS_CONFIG" }
      local r = assert(mon:run(H.cmd(table.unpack(vars)), { session_id = "s1", task_id = "t1",
        env = { PROCESS_CONFIG = '{"a":1}' } }))
      assert.are.equal(("PROCESS_PARENT_PID=%d\nPROCESS_SESSION_ID=s1\nPROCESS_TASK_ID=t1\n"
        .. 'PROCESS_CONFIG={"a":1}\n'):format(require("procmon.input").pid()), r.stdout)
      -- The user's own env wins; without a session or task nothing is added.
      r = assert(mon:run(H.cmd("env", "PROCESS_SESSION_ID"), { session_id = "s1",
        env = { PROCESS_SESSION_ID = "mine" } }))
      assert.are.equal("PROCESS_SESSION_ID=mine\n", r.stdout)
      r = assert(mon:run(H.cmd("env", "PROCESS_TASK_ID"), { env = { PROCESS_TASK_ID = false } }))
      assert.are.equal("PROCESS_TASK_ID unset\n", r.stdout)
      assert.error_matches(function() mon:spawn(H.cmd("exit", "0"), { session_id = "" }) end,
        "bad argument #2 to 'spawn' %(option 'session_id'")
    end)

    it("map the end to completed, failed, killed and timed_out", function()
      assert.are.equal("completed", mon:get(mon:run(H.cmd("exit", "0")).id).status)
      assert.are.equal("failed", mon:get(mon:run(H.cmd("exit", "1")).id).status)
      local r = mon:run(H.cmd("sleep", "30"), { timeout = 0.2 })
      local rec = mon:get(r.id)
      assert.are.same({ "timed_out", "timeout" }, { rec.status, rec.reason })
      local p = mon:spawn(H.cmd("sleep", "30"))
      p:kill()
      rec = mon:get(p:wait().id)
      assert.are.same({ "killed", "killed" }, { rec.status, rec.reason })
    end)

    it("keep the stderr tail, also when a callback gets the stream", function()
      local seen = {}
      local r = mon:run({ "sh", "-c", "i=0; while [ $i -lt 1000 ]; do echo line$i >&2; i=$((i+1)); done; exit 1" },
        { on_stderr = function(c) seen[#seen + 1] = c end })
      assert.is_nil(r.stderr)
      assert.is_true(#seen > 0)
      local m2 = assert(pm.monitor { dir = dir, stderr_tail = 16 })
      local r2 = m2:run({ "sh", "-c", "echo 0123456789abcdefXYZ >&2" },
        { lines = true, on_stderr = function() end })
      assert.are.equal("456789abcdefXYZ\n", mon:get(r2.id).stderr)
      local rec = mon:get(r.id)
      assert.are.equal("line999\n", rec.stderr:sub(-8))
      assert.is_true(#rec.stderr <= 4096 and #rec.stderr > 4000)
    end)

    it("get unique, typeable ids", function()
      local seen = {}
      for _ = 1, 40 do
        local p = assert(mon:spawn(H.cmd("exit", "0"), { stdout = "null", stderr = "null" }))
        assert.matches("^[a-z0-9]+$", p.id)
        assert.is_nil(seen[p.id])
        seen[p.id] = true
      end
      pm.loop()
    end)

    it("finished ones expire after ttl_done; running ones never do", function()
      local m = assert(pm.monitor { dir = dir, ttl_done = 0.3 })
      local live = assert(m:spawn(H.cmd("sleep", "30")))
      local done = m:run(H.cmd("exit", "0"))
      assert.are.equal(2, #m:history())
      pm.sleep(0.5)
      local h = m:history()
      assert.are.equal(1, #h)
      assert.are.equal(live.id, h[1].id)
      assert.is_nil(m:get(done.id) and m:get(done.id).status == "completed" and nil)
      assert.are.equal(1, m:purge())
      assert.is_nil(io.open(dir .. "/done/" .. done.id .. ".json"))
      assert.are.equal("running", m:get(live.id).status)
      live:kill()
      live:wait()
    end)

    it("list newest first in history, running only in active", function()
      local a = mon:run(H.cmd("exit", "0"))
      local b = assert(mon:spawn(H.cmd("sleep", "30")))
      local h = mon:history()
      assert.are.same({ b.id, a.id }, { h[1].id, h[2].id })
      local act = mon:active()
      assert.are.equal(1, #act)
      assert.are.equal(b.id, act[1].id)
      b:close()
      b:wait()
      assert.are.same({}, mon:active())
    end)

    it("refuse a hostile directory", function()
      local base = dir:match("^(.*)/mon$")
      os.execute("ln -s /tmp " .. q(base .. "/link"))
      local m, msg, code = pm.monitor { dir = base .. "/link" }
      assert.is_nil(m)
      assert.are.equal("ELOOP", code)
      assert.matches("symlink", msg)
      assert.has_error(function() pm.monitor { dri = "x" } end,
        "bad argument #1 to 'monitor' (unknown option 'dri')")
    end)
  end)

  describe("processes", function()
    it("behave as pm.spawn's: wait, kill, write, <close>", function()
      local p = assert(mon:spawn(H.cmd("cat"), { stdin = "pipe" }))
      assert.is_true(p:running())
      assert.is_true(p:write("hello"))
      p:close_stdin()
      local r = p:wait()
      assert.are.equal("hello", r.stdout)
      assert.are.equal(r, p:result())
      assert.is_false(p:running())
      local pid
      do
        local c <close> = assert(mon:spawn(H.cmd("sleep", "30")))
        pid = c.pid
      end
      assert.is_true(H.eventually(function() return not H.exists(pid) end))
    end)

    it("can be waited on when detached; a timed-out wait leaves nothing", function()
      local script = ([[
        local m = require("procmon").monitor{ dir = %q }
        local p = assert(m:spawn({ %q, %q, "0.3" }, { detached = true }))
        for _ = 1, 50 do assert(select(3, p:wait(0)) == "ETIMEDOUT") end
        io.write(#p._waiters, " ", p:wait().code, " ")
        local q = assert(m:spawn({ %q, %q, "30" }, { detached = true }))
        assert(select(3, q:wait(0.05)) == "ETIMEDOUT")
        print(q.pid)]]):format(dir, H.lua, H.fixture("sleep"), H.lua, H.fixture("sleep"))
      local out, code = H.sh(H.q(H.procrun) .. " -e " .. H.q(script))
      assert.are.equal(0, code, out)
      -- the first job was waited for; nobody waits for the second any
      -- more, so procrun ended while it runs on
      local pid = assert(tonumber(out:match("^0 0 (%d+)\n$")), out)
      assert.is_true(H.exists(pid))
      H.kill_group(pid)
    end)

    it("stop keeping the loop alive when a wait on a detached one ended in an error", function()
      local script = ([[
        local pm = require "procmon"
        local m = pm.monitor{ dir = %q }
        local q = assert(m:spawn({ %q, %q, "60" }, { detached = true }))
        print(q.pid)
        io.stdout:flush()
        m:spawn({ "true" }, { on_exit = function() error("boom") end })
        assert(not pcall(q.wait, q))
        m:spawn({ "true" }, { on_exit = function() error("boom") end })
        assert(not pcall(q.wait, q, 30))
        io.write(#q._waiters, "\n")]]):format(dir, H.lua, H.fixture("sleep"))
      local r = assert(pm.run({ H.procrun, "-e", script }, { timeout = 15 }))
      local pid = tonumber(r.stdout:match("%d+"))
      H.kill_group(pid)
      assert.is_number(pid, r.stderr)
      assert.are.equal("exit", r.reason, "the failed wait kept the loop alive")
      assert.are.same({ 0, "0" }, { r.code, r.stdout:match("\n(%d+)\n$") }, r.stderr)
    end)

    it("raise misuse at the caller's line", function()
      assert.has_error(function() mon:spawn(H.cmd("exit"), { tiemout = 1 }) end,
        "bad argument #2 to 'spawn' (unknown option 'tiemout')")
      local ok, err = pcall(function() mon:spawn(H.cmd("exit"), { tiemout = 1 }) end)
      assert.is_false(ok)
      assert.matches("monitor_spec.lua:%d+: bad argument", err)
      assert.has_error(function() mon:spawn(H.cmd("exit"), { limit = 0, key = "k" }) end)
      assert.has_error(function() mon:on("stop", print) end,
        "bad argument #1 to 'on' (unknown event 'stop')")
    end)

    it("raise policy misuse, unknown options included, at the caller's line", function()
      local where = H.raises_at
      where(function() policy.restart { nope = 1 } end, "bad argument #1 to 'restart' %(unknown option 'nope'%)")
      where(function() policy.restart { backoff = { inital = 1 } } end,
        "bad argument #1 to 'restart' %(unknown option 'backoff.inital'%)")
      where(function() policy.restart { max = -1 } end, "bad argument #1 to 'restart' %('max' must be")
      where(function() policy.keyed { key = "k", replce = true } end,
        "bad argument #1 to 'keyed' %(unknown option 'replce'%)")
      where(function() mon:spawn(H.cmd("exit"), { key = "k", limit = 0 }) end,
        "bad argument #2 to 'spawn' %(option 'limit'")
      where(function() mon:spawn(H.cmd("exit"), { key = "k", limit = 2, replace = true }) end,
        "bad argument #2 to 'spawn' %(options 'replace' and 'limit' exclude each other%)")
    end)

    it("return fail for a command that does not exist, with no record", function()
      local p, msg, code = mon:spawn({ "/no/such/cmd" })
      assert.is_nil(p)
      assert.are.equal("ENOENT", code)
      assert.matches("no such file", msg)
      assert.are.same({}, mon:history())
    end)
  end)

  describe("liveness", function()
    it("is shared: another process lists what this one runs", function()
      local p = assert(mon:spawn(H.cmd("sleep", "30"), { name = "shared" }))
      local code = ([[
        local pm = require "procmon"
        local mon = assert(pm.monitor { dir = %q })
        local a = mon:active()
        io.write(#a, " ", a[1].id, " ", a[1].name, " ", a[1].owner_pid)
      ]]):format(dir)
      local r = pm.run({ H.lua, "-e", code })
      assert.are.equal(("1 %s shared %d"):format(p.id, md.self()), r.stdout)
      p:kill()
      p:wait()
    end)

    it("sees another process's jobs, and their end", function()
      local owner, lines = background("mon_owner", dir)
      local a_pid, b_pid
      finally(function()   -- one finally per test in busted
        owner:kill("KILL")
        owner:wait()
        H.kill_group(tonumber(a_pid))
        H.kill_group(tonumber(b_pid))
      end)
      assert.is_truthy(H.eventually(function() return #lines() > 0 end, 5))
      local a_id, b_id
      a_id, a_pid, b_id, b_pid = lines()[1]:match("^(%S+) (%d+) (%S+) (%d+)$")
      local act = mon:active()
      assert.are.equal(2, #act)
      local rec = mon:get(a_id)
      assert.are.same({ "running", owner.pid, false }, { rec.status, rec.owner_pid, rec.detached })
      assert.is_true(mon:get(b_id).detached)
      -- its end, recorded by its owner
      os.execute("kill " .. a_pid)
      assert.is_truthy(H.eventually(function() return mon:get(a_id).status ~= "running" end, 5))
      rec = mon:get(a_id)
      assert.are.equal("failed", rec.status)
      -- sleep.lua dies of TERM under lua5.4, exits 143 under procrun
      assert.is_true(rec.signal == "TERM" or rec.exit_code == 143)
    end)

    it("marks a record whose pid lives with another start time lost", function()
      local lost = {}
      mon:on("lost", function(rec) lost[#lost + 1] = rec end)
      local pid, start, boot = md.self()
      local dead = pm.run(H.cmd("exit", "0")).pid  -- a pid that is gone
      local rec = { id = "fake1", pid = pid, pgid = pid, start_time = start + 12345,
        owner_pid = dead, owner_start_time = 1, boot_id = boot, status = "running",
        started_at = pm.time(), cmd = { "x" }, restarts = 0, detached = true }
      local f = assert(io.open(dir .. "/running/fake1.json", "w"))
      f:write(require("procmon.monitor")._encode(rec))
      f:close()
      assert.are.same({}, mon:active())
      assert.are.equal(1, #lost)
      assert.are.equal("fake1", lost[1].id)
      local got = mon:get("fake1")
      assert.are.same({ "lost", "owner_gone" }, { got.status, got.reason })
      assert.is_nil(io.open(dir .. "/running/fake1.json"))
      -- the right start time, but the owner is gone and it was not detached
      rec.id, rec.start_time, rec.detached = "fake2", start, false
      f = assert(io.open(dir .. "/running/fake2.json", "w"))
      f:write(require("procmon.monitor")._encode(rec))
      f:close()
      assert.are.equal("lost", mon:get("fake2").status)
      -- the same, detached: it lives, so it runs
      rec.id, rec.detached = "fake3", true
      f = assert(io.open(dir .. "/running/fake3.json", "w"))
      f:write(require("procmon.monitor")._encode(rec))
      f:close()
      assert.are.equal("running", mon:get("fake3").status)
      assert.are.equal(1, #mon:active())
      assert.are.equal(2, #lost)
    end)

    it("a job of this process that is no longer tracked is lost", function()
      local pid, start, boot = md.self()
      local dead = pm.run(H.cmd("exit", "0")).pid
      local rec = { id = "mine1", pid = dead, pgid = dead, start_time = 1, owner_pid = pid,
        owner_start_time = start, boot_id = boot, status = "running", started_at = pm.time(),
        cmd = { "x" }, restarts = 0, detached = false }
      local f = assert(io.open(dir .. "/running/mine1.json", "w"))
      f:write(require("procmon.monitor")._encode(rec))
      f:close()
      assert.are.equal("lost", mon:get("mine1").status)
      assert.are.equal("gone", mon:get("mine1").reason)
    end)
  end)

  describe("owner killed with kill -9", function()
    it("leaves detached jobs running while they live; the others are lost", function()
      local owner, lines = background("mon_owner", dir)
      assert.is_truthy(H.eventually(function() return #lines() > 0 end, 5))
      local a_id, a_pid, b_id, b_pid = lines()[1]:match("^(%S+) (%d+) (%S+) (%d+)$")
      a_pid, b_pid = tonumber(a_pid), tonumber(b_pid)
      finally(function() H.kill_group(a_pid); H.kill_group(b_pid) end)
      owner:kill("KILL")
      owner:wait()
      assert.are.equal("lost", mon:get(a_id).status)
      assert.are.equal("owner_gone", mon:get(a_id).reason)
      assert.are.equal("running", mon:get(b_id).status)
      assert.are.same({ b_id }, { mon:active()[1].id })
      H.kill_group(b_pid)
      assert.is_truthy(H.eventually(function() return not md.alive(b_pid, mon:get(b_id).start_time or 0) end))
      assert.are.equal("lost", mon:get(b_id).status)
      assert.are.same({}, mon:active())
    end)

    it("takes its non-detached children with it", function()
      local owner, lines = background("mon_owner", dir)
      assert.is_truthy(H.eventually(function() return #lines() > 0 end, 5))
      local _, a_pid, _, b_pid = lines()[1]:match("^(%S+) (%d+) (%S+) (%d+)$")
      a_pid, b_pid = tonumber(a_pid), tonumber(b_pid)
      finally(function() H.kill_group(a_pid); H.kill_group(b_pid) end)
      owner:kill("KILL")
      owner:wait()
      assert.are.same({}, H.leftovers(a_pid))
      assert.is_true(H.exists(b_pid))
    end)
  end)

  describe("an owner that ends with jobs running", function()
    it("records them killed (owner_exit), and they die with it", function()
      local code = ([[
        local pm = require "procmon"
        local mon = assert(pm.monitor { dir = %q })
        local p = assert(mon:spawn({ %q, %q, "30" }))
        io.write(p.id, " ", p.pid)
        io.stdout:flush()
        error("boom")
      ]]):format(dir, H.lua, H.fixture("sleep"))
      local r = pm.run({ H.lua, "-e", code })
      assert.are.equal(1, r.code)
      local id, pid = r.stdout:match("^(%S+) (%d+)$")
      finally(function() H.kill_group(tonumber(pid)) end)
      assert.are.same({}, H.leftovers(tonumber(pid)))
      local rec = mon:get(id)
      assert.are.same({ "killed", "owner_exit" }, { rec.status, rec.reason })
    end)
  end)

  describe("events", function()
    it("start, exit, failure, timeout, restart, with the record", function()
      local seen = {}
      for _, e in ipairs { "start", "exit", "failure", "timeout", "restart" } do
        mon:on(e, function(rec, info) seen[#seen + 1] = { e, rec.id, rec.status, info } end)
      end
      local r = mon:run(H.cmd("exit", "0"))
      assert.are.same({ { "start", r.id, "running" }, { "exit", r.id, "completed", r } }, seen)
      seen = {}
      r = mon:run(H.cmd("exit", "2"))
      assert.are.same({ "start", "exit", "failure" }, { seen[1][1], seen[2][1], seen[3][1] })
      seen = {}
      r = mon:run(H.cmd("sleep", "10"), { timeout = 0.1 })
      assert.are.same({ "start", "exit", "timeout" }, { seen[1][1], seen[2][1], seen[3][1] })
      seen = {}
      r = mon:run(H.cmd("exit", "1"), { policy = policy.restart { max = 1, backoff = { initial = 0.01 } } })
      assert.are.same({ "start", "restart", "exit", "failure" },
        { seen[1][1], seen[2][1], seen[3][1], seen[4][1] })
      assert.are.equal(0.01, seen[2][4].delay)
      assert.are.equal(1, seen[2][4].restarts)
    end)

    it("report an error in a handler like a callback error, after the record", function()
      mon:on("exit", function() error("handler broke") end)
      local p = assert(mon:spawn(H.cmd("exit", "0")))
      local ok, err = pcall(p.wait, p)
      assert.is_false(ok)
      assert.matches("handler broke", err)
      assert.matches("traceback", err)
      assert.are.equal("completed", mon:get(p.id).status)
      local m2 = assert(pm.monitor { dir = dir })
      m2:on("start", function() error("start handler") end)
      local ok2, err2 = pcall(m2.spawn, m2, H.cmd("exit", "0"))
      assert.is_false(ok2)
      assert.matches("start handler", err2)
      pm.loop()
    end)

    it("can be removed with off", function()
      local n = 0
      local function count() n = n + 1 end
      mon:on("exit", count)
      mon:run(H.cmd("exit", "0"))
      assert.is_true(mon:off("exit", count))
      mon:run(H.cmd("exit", "0"))
      assert.are.equal(1, n)
    end)
  end)

  describe("restart policy", function()
    it("restarts a failing job with backoff and stops after max, failed", function()
      local delays = {}
      mon:on("restart", function(_, info) delays[#delays + 1] = info.delay end)
      local pol = policy.restart { max = 3, backoff = { initial = 0.05, factor = 2, max = 0.15 } }
      local p = assert(mon:spawn(H.cmd("exit", "1"), { policy = pol }))
      local r = p:wait()
      assert.are.equal(1, r.code)
      assert.are.same({ 0.05, 0.1, 0.15 }, delays)
      local rec = mon:get(p.id)
      assert.are.same({ "failed", 3, 3, 4 }, { rec.status, rec.restarts, p.restarts, #rec.runs })
      for i = 2, #rec.runs do
        local gap = rec.runs[i].started_at - rec.runs[i - 1].ended_at
        assert.is_true(gap >= delays[i - 1] * 0.9, "gap " .. gap)
      end
      assert.are.equal(1, #mon:history())
    end)

    it("when = failure: a clean exit ends the job; always: it restarts too", function()
      local r = mon:run(H.cmd("exit", "0"), { policy = policy.restart { max = 2, backoff = { initial = 0 } } })
      assert.are.equal(0, mon:get(r.id).restarts)
      r = mon:run(H.cmd("exit", "0"),
        { policy = policy.restart { max = 2, when = "always", backoff = { initial = 0 } } })
      assert.are.same({ 2, "completed" }, { mon:get(r.id).restarts, mon:get(r.id).status })
    end)

    it("is stopped by kill, also while waiting to restart", function()
      local pol = policy.restart { max = 5, backoff = { initial = 30 } }
      local p = assert(mon:spawn(H.cmd("exit", "1"), { policy = pol }))
      assert.is_truthy(H.eventually(function() return mon:get(p.id).next_start_at end))
      local rec = mon:get(p.id)
      assert.are.same({ "running", nil }, { rec.status, rec.pid })
      assert.are.equal(1, #mon:active())
      assert.is_true(p:kill())
      assert.are.equal("killed", mon:get(p.id).status)
      p = assert(mon:spawn(H.cmd("sleep", "30"), { policy = policy.restart { when = "always" } }))
      p:kill()
      p:wait()
      assert.are.same({ "killed", 0 }, { mon:get(p.id).status, mon:get(p.id).restarts })
    end)

    it("comes from the monitor, or a list of policies", function()
      local n = 0
      local count = { after_exit = function() n = n + 1 end }
      local m = assert(pm.monitor { dir = dir, policy = policy.restart { max = 1, backoff = { initial = 0 } } })
      local r = m:run(H.cmd("exit", "1"), { policy = { count } })
      assert.are.equal(1, m:get(r.id).restarts)
      -- the monitor's policy came first and restarted; then it had no
      -- more restarts to give, and the next policy was asked
      assert.are.equal(1, n)
      assert.has_error(function() policy.restart { when = "sometimes" } end)
      assert.has_error(function() mon:spawn(H.cmd("exit"), { policy = { 1 } }) end)
    end)
  end)

  describe("keyed runs", function()
    it("replace: a new run stops the live one of its key", function()
      local a = assert(mon:spawn(H.cmd("sleep", "30"), { key = "lint:a", replace = true }))
      local b = assert(mon:spawn(H.cmd("sleep", "30"), { key = "lint:a", replace = true }))
      assert.is_false(a:running())
      local rec = mon:get(a.id)
      assert.are.same({ "killed", "replaced" }, { rec.status, rec.reason })
      assert.are.same({ b.id }, { mon:active()[1].id })
      local c = assert(mon:spawn(H.cmd("sleep", "30"), { key = "lint:b", replace = true }))
      assert.are.equal(2, #mon:active())
      b:kill(); c:kill()
      pm.loop()
    end)

    it("limit: at most n live, the rest wait their turn in tasks", function()
      local order = {}
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = pm.task(function()
          local p = assert(mon:spawn(H.cmd("sleep", "0.2"), { key = "k", limit = 2, stdout = "null" }))
          order[#order + 1] = i
          return p:wait()
        end)
      end
      assert.are.same({ 1, 2 }, order)
      for i = 1, 3 do tasks[i]:wait() end
      assert.are.same({ 1, 2, 3 }, order)
      local h = mon:history()
      table.sort(h, function(x, y) return x.started_at < y.started_at end)
      assert.is_true(h[3].started_at >= math.min(h[1].ended_at, h[2].ended_at))
    end)

    it("replace works across two procrun processes", function()
      local a, alines = background("mon_keyed", dir, "build", "replace", "30")
      assert.is_truthy(H.eventually(function() return #alines() > 0 end, 5))
      local b, blines = background("mon_keyed", dir, "build", "replace", "0.1")
      local ra, rb = a:wait(), b:wait()
      assert.are.equal(0, ra.code)
      assert.are.equal(0, rb.code)
      assert.are.equal("killed replaced", alines()[2])
      assert.are.equal("completed exit", blines()[2])
    end)

    it("replace of a detached run whose owner is gone records it killed, replaced", function()
      local script = ([[
        local m = require("procmon").monitor{ dir = %q }
        print(assert(m:spawn({ %q, %q, "30" }, { detached = true, key = "k", replace = true })).id)]]
      ):format(dir, H.lua, H.fixture("sleep"))
      local out, code = H.sh(H.q(H.procrun) .. " -e " .. H.q(script))
      assert.are.equal(0, code, out)
      local old = assert(mon:get(out:match("%S+")))
      assert.are.equal("running", old.status)
      local b = assert(mon:spawn(H.cmd("sleep", "30"), { key = "k", replace = true }))
      -- dead (a zombie until pid 1 reaps it: it was reparented)
      assert.is_false(require("procmon.mondir").alive(old.pid, old.start_time))
      local rec = mon:get(old.id)
      assert.are.same({ "killed", "replaced" }, { rec.status, rec.reason })
      b:kill()
      b:wait()
    end)

    it("limit works across two procrun processes", function()
      local a, alines = background("mon_keyed", dir, "db", "limit", "0.5")
      assert.is_truthy(H.eventually(function() return #alines() > 0 end, 5))
      local b, blines = background("mon_keyed", dir, "db", "limit", "0.1")
      a:wait()
      b:wait()
      local ida, idb = alines()[1]:match("started (%S+)"), blines()[1]:match("started (%S+)")
      local ra, rb = mon:get(ida), mon:get(idb)
      assert.are.same({ "completed", "completed" }, { ra.status, rb.status })
      assert.is_true(rb.started_at >= ra.ended_at, "b started before a ended")
    end)
  end)

  describe("logs", function()
    it("go to a capped file with one rotation, named in the record", function()
      local p = assert(mon:spawn(H.cmd("chatty", "100", "100"), { log = true, log_max = 2000 }))
      local r = p:wait()
      assert.is_nil(r.stdout)
      local rec = mon:get(p.id)
      assert.are.equal(dir .. "/logs/" .. p.id .. ".log", rec.log)
      local cur, old = H.read_file(rec.log), H.read_file(rec.log .. ".1")
      assert.is_true(#cur > 0 and #cur <= 2000 and #old == 2000)
      -- stdout and stderr are appended as they arrive: the last lines of
      -- both streams are there, whole
      local both = old .. cur
      assert.is_true(tonumber(cur:match("(%d%d%d%d%d%d) x+\n$")) >= 99)
      for line in both:gmatch("[^\n]*\n") do assert.matches("^%d%d%d%d%d%d x+\n$", line) end
      assert.are.equal("000100 " .. ("x"):rep(92) .. "\n", rec.stderr:sub(-100))
      assert.are.equal(600, tonumber(mode(rec.log)))
      local path = dir:match("^(.*)/mon$") .. "/my.log"
      r = mon:run(H.cmd("echo", "hi"), { log = path })
      assert.are.equal(path, mon:get(r.id).log)
      assert.are.equal("hi\n", H.read_file(path))
    end)

    it("of a detached job are private too, whatever the umask", function()
      local script = ([[
        local m = require("procmon").monitor{ dir = %q }
        local p = assert(m:spawn({ %q, "-e", "print('bg')" }, { detached = true, log = true }))
        p:wait()
        print(m:get(p.id).log)]]):format(dir, H.lua)
      local out = H.sh("umask 022; exec " .. H.q(H.procrun) .. " -e " .. H.q(script))
      local path = out:match("[^\n]+")
      assert.are.equal("bg\n", H.read_file(path))
      assert.are.equal(600, tonumber(mode(path)))
    end)
  end)
end)
