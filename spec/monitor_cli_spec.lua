-- procrun ps / kill / logs / gc: the monitor from the command line.
local pm = require "procmon"
local H = require "helpers"
local json = require "procmon.json"
local md = require "procmon.mondir"

local q = H.q

--- Runs procrun with args; returns stdout, stderr, exit code.
local function procrun(args, env)
  local cmd = { H.procrun }
  for i, a in ipairs(args) do cmd[i + 1] = a end
  local r = assert(pm.run(cmd, { timeout = 30, env = env }))
  return r.stdout, r.stderr, r.code
end

describe("procrun", function()
  local base, dir, mon

  before_each(function()
    base = H.tmpdir()
    dir = base .. "/mon"
    mon = assert(pm.monitor { dir = dir })
  end)

  after_each(function()
    H.assert_no_live_handles()
    os.execute("rm -rf " .. q(base))
  end)

  describe("ps", function()
    it("lists running records as a table; --all adds finished ones", function()
      local done = mon:run(H.cmd("exit", "1"), { name = "finished-job" })
      local p = assert(mon:spawn(H.cmd("sleep", "30"), { name = "sleeper" }))
      local out, err, code = procrun({ "ps", "--dir", dir })
      assert.are.equal(0, code, err)
      local lines = {}
      for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.are.equal(2, #lines)
      assert.matches("^ID +PID +NAME +STATUS +AGE +RESTARTS +COMMAND$", lines[1])
      assert.matches("^" .. p.id .. " +" .. p.pid .. " +sleeper +running +%d+s +0 +.*sleep%.lua 30$", lines[2])
      assert.is_nil(out:find("\27", 1, true))   -- not a terminal: no colour
      out = procrun({ "ps", "--all", "--dir", dir })
      assert.matches("DURATION", out)
      assert.matches(done.id .. " +%d+ +finished%-job +failed", out)
      p:kill()
      p:wait()
    end)

    it("fits the terminal width (COLUMNS) and colours only a terminal", function()
      local p = assert(mon:spawn(H.cmd("sleep", "30", ("x"):rep(200))))
      local out = procrun({ "ps", "--dir", dir }, { COLUMNS = "60" })
      for l in out:gmatch("[^\n]+") do assert.is_true(utf8.len(l) <= 60, l) end
      assert.matches("…\n", out)
      -- a terminal: script(1) gives procrun one, if installed
      if os.execute("command -v script > /dev/null") then
        local cmd = ("%s ps --dir %s"):format(q(H.procrun), q(dir))
        local r = pm.run({ "script", "-qec", cmd, "/dev/null" }, { env = { TERM = "xterm" } })
        assert.matches("\27%[32mrunning", r.stdout)
        r = pm.run({ "script", "-qec", cmd, "/dev/null" }, { env = { NO_COLOR = "1", TERM = "xterm" } })
        assert.is_nil(r.stdout:find("\27[", 1, true))
      end
      p:kill()
      p:wait()
    end)

    it("fits a narrow terminal: NAME shrinks, then RESTARTS, PID and AGE go", function()
      local p = assert(mon:spawn(H.cmd("sleep", "30"), { name = ("n"):rep(24) }))
      for _, cols in ipairs({ 80, 60, 40, 30, 12 }) do
        local out = procrun({ "ps", "--all", "--dir", dir }, { COLUMNS = tostring(cols) })
        for l in out:gmatch("[^\n]+") do assert.is_true(utf8.len(l) <= cols, cols .. ": " .. l) end
        if cols == 30 then assert.matches("^ID%s+STATUS%s+COMMAND\n", out) end
        assert.matches(p.id, out, 1, true)
      end
      local wide = procrun({ "ps", "--dir", dir }, { COLUMNS = "200" })
      assert.matches("PID.*NAME.*RESTARTS", wide)
      p:kill()
      p:wait()
    end)

    it("measures in terminal cells, shows no control characters, ignores a bad COLUMNS", function()
      local sl = require "procmon.statusline"
      local p = assert(mon:spawn(H.cmd("sleep", "30", "\27[2J"), { name = "データベース移行ジョブ\27[31m" }))
      for _, cols in ipairs({ 80, 50, 40 }) do
        local out, err, code = procrun({ "ps", "--dir", dir }, { COLUMNS = tostring(cols) })
        assert.are.equal(0, code, err)
        assert.is_nil(out:find("\27", 1, true), out)
        for l in out:gmatch("[^\n]+") do assert.is_true(sl.width(l) <= cols, cols .. ": " .. l) end
      end
      for _, bad in ipairs({ "60.5", "0", "-3", "x" }) do
        local out, err, code = procrun({ "ps", "--dir", dir }, { COLUMNS = bad })
        assert.are.equal(0, code, err)
        assert.matches("データベース移行ジョブ", out)  -- not a terminal: nothing cut
      end
      p:kill()
      p:wait()
    end)

    it("--json prints the records as one array", function()
      local a = mon:run(H.cmd("exit", "0"), { name = "a" })
      local b = assert(mon:spawn(H.cmd("sleep", "30"), { name = "b" }))
      local out = procrun({ "ps", "--json", "--dir", dir })
      local list = json.decode(out)
      assert.are.equal(1, #list)
      assert.are.same({ b.id, b.pid, "running", "b" }, { list[1].id, list[1].pid, list[1].status, list[1].name })
      list = json.decode((procrun({ "ps", "--all", "--json", "--dir", dir })))
      assert.are.same({ b.id, a.id }, { list[1].id, list[2].id })
      assert.are.equal("completed", list[2].status)
      b:kill()
      b:wait()
      assert.are.equal("[]\n", (procrun({ "ps", "--json", "--dir", dir })))
    end)

    it("reports vanished records as lost", function()
      local pid, start, boot = md.self()
      local rec = { id = "gone1", pid = pid, pgid = pid, start_time = start + 1,
        owner_pid = 999999, owner_start_time = 1, boot_id = boot, status = "running",
        started_at = pm.time(), cmd = { "x" }, restarts = 0 }
      local f = assert(io.open(dir .. "/running/gone1.json", "w"))
      f:write(require("procmon.monitor")._encode(rec))
      f:close()
      assert.are.equal("[]\n", (procrun({ "ps", "--json", "--dir", dir })))
      local list = json.decode((procrun({ "ps", "--all", "--json", "--dir", dir })))
      assert.are.same({ "gone1", "lost" }, { list[1].id, list[1].status })
    end)

    it("--all stays exact with its index of finished records", function()
      local monitor = require "procmon.monitor"
      local d, now = mon._d, pm.time()
      local function put(id, status, t)
        assert(d:write("done", id, monitor._encode { id = id, status = status, cmd = { "x" },
          started_at = t, ended_at = t + 1, expires_at = now + 3600, restarts = 0 }))
      end
      for i = 1, 40 do put(("r%03d"):format(i), "completed", now - 1000 + i) end
      local function ids_statuses()
        local list = json.decode((procrun({ "ps", "--all", "--json", "--dir", dir })))
        local out = {}
        for _, r in ipairs(list) do out[#out + 1] = r.id .. "=" .. r.status end
        return out
      end
      local first = ids_statuses()
      assert.are.equal(40, #first)
      assert.are.equal("r040=completed", first[1])
      assert.is_not_nil(io.open(dir .. "/.done-index"))   -- written: 40 files read
      put("r040", "failed", now - 1000 + 40)               -- a new version (new inode)
      os.remove(dir .. "/done/r001.json")                  -- gone
      put("r041", "killed", now)                           -- new
      put("r002", "completed", now - 5000)                 -- still sorted by started_at
      local second = ids_statuses()
      assert.are.equal(40, #second)
      assert.are.same({ "r041=killed", "r040=failed", "r039=completed" },
        { second[1], second[2], second[3] })
      assert.are.equal("r002=completed", second[40])
      -- a broken index is ignored
      local f = assert(io.open(dir .. "/.done-index", "w"))
      f:write("procmon-done-index 2\nr040 1 x")
      f:close()
      assert.are.same(second, ids_statuses())
      -- expired records are left out, indexed or not
      assert(d:write("done", "r041", monitor._encode { id = "r041", status = "killed",
        cmd = { "x" }, started_at = now, expires_at = now - 1, restarts = 0 }))
      assert.are.equal("r040=failed", ids_statuses()[1])
    end)

    it("reads a field given twice as the JSON decoder does: the last one wins", function()
      -- Found by fuzz/record.c: the scanner kept the first expires_at.
      local now = pm.time()
      local text = ('{"id":"dup1","status":"completed","cmd":["x"],"restarts":0,'
        .. '"started_at":%.3f,"expires_at":%.3f,"expires_at":null}'):format(now, now - 10)
      assert(mon._d:write("done", "dup1", text))
      local list = json.decode((procrun({ "ps", "--all", "--json", "--dir", dir })))
      assert.are.same({ "dup1" }, { list[1] and list[1].id })
    end)

    it("rejects unknown options", function()
      local _, err, code = procrun({ "ps", "--bogus" })
      assert.are.equal(1, code)
      assert.matches("unknown option '%-%-bogus'", err)
    end)
  end)

  describe("kill", function()
    it("signals a live record's process group", function()
      local p = assert(mon:spawn({ "sh", "-c", "sleep 30 & sleep 30; wait" }))
      local out, err, code = procrun({ "kill", p.id, "--dir", dir })
      assert.are.equal(0, code, err)
      assert.matches("sent SIGTERM to " .. p.id, out)
      p:wait()
      assert.are.same({}, H.leftovers(p.pid))
      local rec = mon:get(p.id)
      assert.are.same({ "killed", "killed" }, { rec.status, rec.reason })
    end)

    it("takes a signal and a unique id prefix", function()
      local p = assert(mon:spawn(H.cmd("sleep", "30")))
      local _, err, code = procrun({ "kill", p.id:sub(1, 5), "KILL", "--dir", dir })
      assert.are.equal(0, code, err)
      assert.are.equal("KILL", p:wait().signal)
    end)

    it("refuses finished and unknown ids, and a reused pid", function()
      local r = mon:run(H.cmd("exit", "0"))
      local _, err, code = procrun({ "kill", r.id, "--dir", dir })
      assert.are.equal(1, code)
      assert.matches("is not running %(completed%)", err)
      _, err, code = procrun({ "kill", "zzzzzzz", "--dir", dir })
      assert.are.equal(1, code)
      assert.matches("no record 'zzzzzzz'", err)
      _, err, code = procrun({ "kill", "../etc", "--dir", dir })
      assert.are.equal(1, code)
      -- a live pid with another start time: refused, and recorded lost
      local pid, start, boot = md.self()
      local rec = { id = "reused", pid = pid, pgid = pid, start_time = start + 7,
        owner_pid = pid, owner_start_time = start + 7, boot_id = boot, status = "running",
        started_at = pm.time(), cmd = { "x" }, restarts = 0 }
      local f = assert(io.open(dir .. "/running/reused.json", "w"))
      f:write(require("procmon.monitor")._encode(rec))
      f:close()
      _, err, code = procrun({ "kill", "reused", "--dir", dir })
      assert.are.equal(1, code)
      assert.matches("not running %(lost%)", err)
      assert.is_true(H.exists(pid))
    end)

    it("records the end of a detached job whose owner is gone", function()
      local code = ([[
        local pm = require "procmon"
        local mon = assert(pm.monitor { dir = %q })
        io.write(assert(mon:spawn({ %q, %q, "30" }, { detached = true })).id)
      ]]):format(dir, H.lua, H.fixture("sleep"))
      local id = pm.run({ H.lua, "-e", code }).stdout
      local rec = mon:get(id)
      finally(function() H.kill_group(rec.pid) end)
      assert.are.equal("running", rec.status)
      local out, err, rc = procrun({ "kill", id, "HUP", "--dir", dir })
      assert.are.equal(0, rc, err)
      assert.matches("sent", out)
      assert.are.same({ "killed", "killed", "HUP" }, { mon:get(id).status, mon:get(id).reason, mon:get(id).signal })
    end)

    it("ends a job waiting to restart at once, not when its backoff is over", function()
      local pol = require("procmon.policy").restart { max = 5, backoff = { initial = 60 } }
      local p = assert(mon:spawn(H.cmd("exit", "1"), { policy = pol }))
      assert.is_truthy(H.eventually(function() return mon:get(p.id).next_start_at end))
      local out, err, rc = procrun({ "kill", p.id, "--dir", dir })
      assert.are.equal(0, rc, err)
      assert.matches("waiting to restart", out)
      local r = p:wait(5)
      assert.is_truthy(r, "the job was still waiting to restart")
      assert.are.same({ "killed", "killed", 0 }, { mon:get(p.id).status, mon:get(p.id).reason, p.restarts })
    end)
  end)

  describe("logs", function()
    it("prints the log, or its last lines; both files after a rotation", function()
      local r = mon:run(H.cmd("chatty", "50", "100"), { log = true, log_max = 1000 })
      local out, err, code = procrun({ "logs", r.id, "--dir", dir })
      assert.are.equal(0, code, err)
      local rec = mon:get(r.id)
      assert.are.equal(H.read_file(rec.log .. ".1") .. H.read_file(rec.log), out)
      assert.are.equal(2000, #out)
      out = procrun({ "logs", r.id, "-n", "3", "--dir", dir })
      local want = {}
      for l in H.read_file(rec.log):gmatch("[^\n]*\n") do want[#want + 1] = l end
      assert.are.equal(table.concat(want, "", #want - 2), out)
      out = procrun({ "logs", r.id, "-n", "15", "--dir", dir })
      assert.are.equal(1500, #out)
      local _, err2, code2 = procrun({ "logs", mon:run(H.cmd("exit", "0")).id, "--dir", dir })
      assert.are.equal(1, code2)
      assert.matches("has no log", err2)
    end)

    it("-f loses nothing written between the printed part and the followed part", function()
      -- A writer that is busy when `logs -f` starts (detached: it writes
      -- its log itself, line by line): the lines it wrote between the
      -- printing and the following used to be lost (the log was opened
      -- again, at its end).
      local p = assert(mon:spawn({ "sh", "-c",
        "i=0; while [ $i -lt 100000 ]; do echo $i; i=$((i+1)); done" },
        { log = true, detached = true }))
      pm.sleep(0.05)
      local out, err, code = procrun({ "logs", "-f", p.id, "--dir", dir })
      assert.are.equal(0, code, err)
      local want = {}
      for i = 0, 99999 do want[#want + 1] = i .. "\n" end
      want = table.concat(want)
      assert.are.equal(#want, #out)
      assert.is_true(want == out)
      p:wait()
    end)

    it("-f follows the log through rotations until the job ends", function()
      local p = assert(mon:spawn({ "sh", "-c",
        "sleep 0.5; i=0; while [ $i -lt 120 ]; do printf '%04d.......\\n' $i; i=$((i+1)); sleep 0.01; done" },
        { log = true, log_max = 480 }))  -- a rotation every 40 lines (0.4 s: polls are 0.1 s)
      local out, err, code = procrun({ "logs", "-f", p.id, "--dir", dir })
      assert.are.equal(0, code, err)
      assert.is_false(p:running() and mon:get(p.id).status == "running")
      local want = {}
      for i = 0, 119 do want[#want + 1] = ("%04d.......\n"):format(i) end
      assert.are.equal(table.concat(want), out)
      p:wait()
    end)
  end)

  describe("gc", function()
    it("removes expired records, their logs, and cache entries", function()
      local env = { PROCMON_STATE_DIR = base }
      local m = assert(pm.monitor { dir = base .. "/monitor", ttl_done = 0.1 })
      local r = m:run(H.cmd("echo", "x"), { log = true })
      local keep = assert(pm.monitor { dir = base .. "/monitor" }):run(H.cmd("exit", "0"))
      local c = assert(pm.cache.open(base .. "/cache"))
      c:set("old", 1, 0.1)
      c:close()
      pm.sleep(0.2)
      local out, err, code = procrun({ "gc" }, env)
      assert.are.equal(0, code, err)
      assert.matches("removed 1 file", out)
      assert.matches("removed 1 record from " .. base .. "/monitor", out)
      assert.is_nil(io.open(base .. "/monitor/done/" .. r.id .. ".json"))
      assert.is_nil(io.open(base .. "/monitor/logs/" .. r.id .. ".log"))
      assert.is_not_nil(m:get(keep.id))
    end)
  end)

  it("--help lists every subcommand", function()
    local out, _, code = procrun({ "--help" })
    assert.are.equal(0, code)
    for _, sub in ipairs { "ps %[%-%-all%] %[%-%-json%]", "kill ID %[SIGNAL%]",
      "logs ID %[%-f%] %[%-n N%]", "gc", "help", "%-e CODE", "%-%-version" } do
      assert.matches(sub, out)
    end
  end)
end)
