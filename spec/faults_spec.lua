-- Faults from the system, each provoked for real: a full disk and a
-- read-only file system under the state dir, descriptor exhaustion, a long
-- run of short children, kill -9 in the middle of a locked update.
-- Each must give a clean `nil, msg, code` (or a clean recovery), never a
-- crash, a leak, a zombie or a corrupt file.
local pm = require "procmon"
local H = require "helpers"
local cache = require "procmon.cache"
local cjson = require "cjson.safe"

local q, sh = H.q, H.sh

-- The files in dir, sorted, except the cache's directory lock ".lock"
-- (created by the first write and kept).
local function ls(dir)
  local names = {}
  for name in sh("ls -A " .. q(dir)):gmatch("[^\n]+") do
    if name ~= ".lock" then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- "name value" lines printed by a fixture, as a table.
local function fields(out)
  local t = {}
  for k, v in ("\n" .. out):gmatch("\n([%w_]+) ([^\n]*)") do t[k] = v end
  return t
end

-- Whether this machine lets us mount a small tmpfs (root, no seccomp).
local function try_mount(dir, opts)
  return select(2, sh(("mount -t tmpfs -o %s tmpfs %s"):format(opts, q(dir)))) == 0
end

local can_mount = (function()
  local d = H.tmpdir()
  local ok = try_mount(d, "size=64k,mode=0700")
  if ok then sh("umount " .. q(d)) end
  os.remove(d)
  return ok
end)()

local is_root = sh("id -u"):match("^0") ~= nil

local function env_prefix()
  return ("PM_BUILD_DIR=%s "):format(q(H.build))
end

describe("faults", function()
  after_each(H.assert_no_live_handles)

  describe("disk full on the state dir", function()
    local mnt

    before_each(function() mnt = H.tmpdir() end)
    after_each(function()
      sh("umount " .. q(mnt))
      os.execute("rm -rf " .. q(mnt))
    end)

    local mounted = can_mount and it or pending
    mounted("(a full tmpfs): ENOSPC, the previous value intact, no temp file left", function()
      assert.is_true(try_mount(mnt, "size=128k,mode=0700"))
      local c = assert(cache.open(mnt .. "/cache"))
      assert(c:set("k", { v = "before" }))
      local ok, msg, code = c:set("k", ("x"):rep(512 * 1024))
      assert.is_nil(ok)
      assert.are.equal("ENOSPC", code)
      assert.matches("^cache set 'k%.json': ENOSPC: ", msg)
      assert.are.same({ v = "before" }, c:get("k"))
      assert.are.same({ "k.json" }, ls(mnt .. "/cache"))
      -- An update that cannot be written keeps the old value and lets go
      -- of its lock.
      local v, umsg, ucode = c:update("k", function() return ("y"):rep(512 * 1024) end)
      assert.is_nil(v)
      assert.are.equal("ENOSPC", ucode)
      assert.matches("ENOSPC", umsg)
      assert.are.same({ v = "before" }, c:get("k"))
      assert.are.same({ v = "after" }, c:update("k", function() return { v = "after" } end))
      -- Filled up with small entries: each write either lands whole or
      -- fails cleanly, and every landed one reads back.
      local n, fail_code = 0, nil
      for i = 1, 10000 do
        local sok, _, scode = c:set("f" .. i, ("z"):rep(1000))
        if not sok then fail_code = scode; break end
        n = i
      end
      assert.are.equal("ENOSPC", fail_code)
      assert.is_true(n > 10)
      for i = 1, n do assert.are.equal(1000, #c:get("f" .. i)) end
      assert.are.same({ v = "after" }, c:get("k"))
      -- Room made, writes work again.
      for i = 1, n do c:delete("f" .. i) end
      assert.is_true(c:set("k", { v = "again" }))
      assert.are.same({ v = "again" }, c:get("k"))
      c:close()
    end)

    it("(a file size limit, ulimit -f): a clean error, the previous value intact", function()
      local out = sh(("%s sh -c %s"):format(env_prefix(), q(("trap '' XFSZ; ulimit -f 64; exec %s %s %s")
        :format(q(H.lua), q(H.fixture("fill_disk")), q(mnt .. "/cache")))))
      local r = fields(out)
      assert.are.equal("nil", r.ok, out)
      assert.are.equal("EFBIG", r.code, out)
      assert.matches("^cache set 'k%.json': EFBIG: ", r.msg)
      assert.are.equal("small", r.value)
      assert.are.equal("true", r.again)
      assert.are.same({ "k.json", "k2.json" }, ls(mnt .. "/cache"))
    end)
  end)

  describe("a read-only state dir", function()
    local mnt, c, expect

    before_each(function()
      mnt = H.tmpdir()
      if is_root and can_mount then
        assert.is_true(try_mount(mnt, "size=256k,mode=0700"))
      end
      c = assert(cache.open(mnt .. "/cache"))
      assert(c:set("k", "kept"))
      assert(c:set("old", "expiring", 0.05))
      -- root ignores permission bits: a read-only mount is the real test;
      -- anyone else gets a mode without write permission.
      if is_root and can_mount then
        assert.are.equal(0, select(2, sh("mount -o remount,ro " .. q(mnt))))
        expect = "EROFS"
      else
        sh("chmod 0500 " .. q(mnt) .. " " .. q(mnt .. "/cache"))
        expect = "EACCES"
      end
    end)

    after_each(function()
      c:close()
      sh("umount " .. q(mnt))
      sh("chmod -R u+w " .. q(mnt))
      os.execute("rm -rf " .. q(mnt))
    end)

    local testable = (is_root and not can_mount) and pending or it
    testable("reads work, writes fail cleanly with the code", function()
      assert.are.equal("kept", c:get("k"))
      assert.are.same({ "k", "old" }, c:keys())
      local ok, msg, code = c:set("k", "new")
      assert.is_nil(ok)
      assert.are.equal(expect, code)
      assert.matches("^cache set 'k%.json': " .. expect .. ": ", msg)
      local v, umsg, ucode = c:update("k", function() return "new" end)
      assert.is_nil(v)
      assert.are.equal(expect, ucode)
      assert.is_string(umsg)
      assert.is_nil(select(1, c:delete("k")))
      assert.are.equal("kept", c:get("k"))
      -- An expired entry that cannot be removed is still a miss.
      pm.sleep(0.1)
      assert.is_nil(c:get("old"))
      local r, pmsg = c:purge()
      assert.is_true(r == 0 or (r == nil and type(pmsg) == "string"))
      local d, omsg, ocode = cache.open(mnt .. "/other")
      assert.is_nil(d)
      assert.are.equal(expect, ocode)
      assert.matches("cache dir", omsg)
    end)

    testable("as PROCMON_STATE_DIR: state_dir() and cache.open() fail cleanly", function()
      local code = "local sd, msg, code = pm.state_dir(); print(tostring(sd), code, msg);"
        .. " local c, cmsg, ccode = pm.cache.open(); print(tostring(c), ccode, cmsg)"
      local out = sh(("%sPROCMON_STATE_DIR=%s %s -e %s"):format(env_prefix(),
        q(mnt .. "/procmon"), q(H.lua),
        q(("package.cpath = %q .. '/?.so;' .. package.cpath; local pm = require 'procmon'; ")
          :format(H.build) .. code)))
      local l1, l2 = out:match("([^\n]*)\n([^\n]*)")
      assert.matches("^nil\t" .. expect .. "\t", l1, 1, false)
      assert.matches("^nil\t" .. expect .. "\t", l2, 1, false)
    end)
  end)

  describe("descriptor exhaustion (ulimit -n 32, 100 spawns)", function()
    local function run(stdio, extra)
      local out = sh(("%s%s sh -c %s"):format(env_prefix(), extra or "",
        q(("ulimit -n 32; exec %s %s %s"):format(q(H.lua), q(H.fixture("fd_exhaust")), stdio))))
      return fields(out), out
    end

    for _, case in ipairs({ { "pipe" }, { "null" }, { "pipe", "PROCMON_NO_PIDFD=1 " } }) do
      it(("gives nil, msg, EMFILE and leaks nothing (stdio %s%s)"):format(case[1],
        case[2] and ", no pidfd" or ""), function()
        local r, out = run(case[1], case[2])
        assert.are.equal(100, tonumber(r.spawned) + tonumber(r.failed), out)
        assert.is_true(tonumber(r.spawned) > 0, out)
        assert.is_true(tonumber(r.failed) > 0, out)
        assert.are.equal("EMFILE", r.code, out)
        assert.matches("^spawn 'sh': .*EMFILE: ", r.msg)
        assert.is_string(r.fds_before, out)
        assert.are.equal(r.fds_before, r.fds_after, out)
        assert.are.equal("again", r.again, out)
        assert.are.equal("0", r.handles, out)
      end)
    end
  end)

  it("5,000 short children, 8 at a time: no zombie, no descriptor growth", function()
    -- In a process of its own: here other specs' leftovers could open
    -- descriptors while the children run.
    local out = sh(("%s%s %s 5000"):format(env_prefix(), q(H.lua), q(H.fixture("many_children"))))
    local r = fields(out)
    assert.are.equal("0", r.wrong, out)
    assert.are.equal("0", r.zombies, out)
    assert.is_true(tonumber(r.fds_after) <= tonumber(r.fds_before), out)
    assert.are.equal("0", r.handles, out)
  end)

  for _, pidfd in ipairs({ "", "PROCMON_NO_PIDFD=1 " }) do
    it("a loop busy for 1 s while a child exits loses none of its output"
      .. (pidfd == "" and "" or " (SIGCHLD path)"), function()
      local out = sh(("%s%s%s %s"):format(env_prefix(), pidfd, q(H.lua), q(H.fixture("busy_reap"))))
      assert.are.equal('"hello\\\n" exit\n', out)
    end)
  end

  it("kill -9 of procrun while it writes monitor records: nothing corrupt, "
    .. "its running records lost, its children gone", function()
    local json = require "procmon.json"
    local root = H.tmpdir()
    local dir = root .. "/mon"
    local ids, groups = {}, {}
    finally(function()
      for pgid in pairs(groups) do H.kill_group(pgid) end
      os.execute("rm -rf " .. q(root))
    end)
    for round = 1, 5 do
      local lines = {}
      local owner = assert(pm.spawn(H.cmd("mon_churn", dir), { lines = true,
        on_stdout = function(l) lines[#lines + 1] = l end }))
      -- Killed while its tasks start and end records: after 8 to 40 starts.
      local want = 8 + round * 7
      assert.is_truthy(H.eventually(function() return #lines >= want end, 20))
      owner:kill("KILL")
      owner:wait()
      for _, l in ipairs(lines) do
        local id, pid = l:match("^(%S+) (%d+)$")
        if id then ids[#ids + 1] = id; groups[tonumber(pid)] = true end
      end
    end
    -- Every file is whole JSON (temp files of the dead aside).
    for _, sub in ipairs({ "running", "done" }) do
      for _, name in ipairs(ls(dir .. "/" .. sub)) do
        if not name:match("^%.") then
          local rec = json.decode(H.read_file(dir .. "/" .. sub .. "/" .. name))
          assert.is_table(rec, sub .. "/" .. name)
          assert.are.equal(name, rec.id .. ".json")
        end
      end
    end
    -- The children died with their owner (non-detached: PR_SET_PDEATHSIG).
    for pgid in pairs(groups) do assert.are.same({}, H.leftovers(pgid), "group " .. pgid) end
    -- Every record reads back; none is running any more; those that were
    -- running when the owner died are lost.
    local mon = assert(pm.monitor { dir = dir })
    local lost = 0
    for _, id in ipairs(ids) do
      local rec = mon:get(id)
      if rec then
        assert.is_truthy(({ completed = 1, failed = 1, lost = 1, killed = 1 })[rec.status],
          id .. " " .. tostring(rec.status))
        if rec.status == "lost" then lost = lost + 1 end
      end
    end
    assert.is_true(lost >= 5, "records lost: " .. lost)
    assert.are.same({}, mon:active())
  end)

  it("kill -9 of writers inside locked updates: no deadlock, nothing corrupt, no update lost", function()
    local dir = H.tmpdir()
    local log = dir .. "-log"
    local writer = ("%s %s %s k %s"):format(q(H.lua), q(H.fixture("incr_log")), q(dir), q(log))
    -- 4 rounds: 6 writers race on one key, 3 die by kill -9 at once, the
    -- 3 others are stopped the same way a little later.
    local killed = 0
    for round = 1, 4 do
      local script = {}
      for i = 1, 6 do
        local ms = 30 + (i * 41 + round * 17) % 90
        script[#script + 1] = ("%s >/dev/null 2>&1 & p%d=$!; "):format(writer, i)
        script[#script + 1] = ("(sleep 0.%03d; kill -9 $p%d) & "):format(ms, i)
      end
      script[#script + 1] = "wait"
      sh(table.concat(script))
      killed = killed + 6
      -- Every file is an entry or a lock file; the entry parses.
      for _, name in ipairs(ls(dir)) do
        assert.is_truthy(name == "k.json" or name == ".lock-k.json" or name:match("^%.tmp%-"), name)
      end
    end
    local c = assert(cache.open(dir))
    -- The locks of the dead are free: an update goes through at once.
    local finisher = sh(("%s %s %s k %s 100"):format(q(H.lua), q(H.fixture("incr_log")), q(dir), q(log)))
    assert.are.equal("done\n", finisher)
    local committed = 0
    for _ in io.lines(log) do committed = committed + 1 end
    local raw = cjson.decode(H.read_file(dir .. "/k.json"))
    assert.are.equal("k", raw.key)
    local v = c:get("k")
    -- A writer killed between its rename and its log line committed one
    -- increment it could not log: at most one per killed writer.
    assert.is_true(v >= committed and v <= committed + killed,
      ("value %d, %d committed, %d killed"):format(v, committed, killed))
    assert.is_true(committed > 100)
    c:purge()
    c:close()
    os.execute("rm -rf " .. q(dir) .. " " .. q(log))
  end)
end)
