-- Output capture: lost tails, binary data, max_buffer, chunk and line
-- callbacks, timeouts that must reach the whole process tree.
local pm = require "procmon"
local H = require "helpers"

describe("capture", function()
  after_each(H.assert_no_live_handles)

  it("keeps every byte of a child that writes 1 MiB and exits at once", function()
    for _ = 1, 3 do
      local r = pm.run(H.cmd("spew", tostring(1024 * 1024)))
      assert.are.equal(0, r.code)
      assert.are.equal(1024 * 1024, #r.stdout)
      assert.are.equal(("0123456789abcdef"):rep(4096), r.stdout:sub(1, 65536))
    end
  end)

  it("makes a big capture (kept in a memfd under procrun) an ordinary string", function()
    -- Past 1 MiB procrun keeps the capture in a memfd and builds the
    -- string from the same pages (src/pm_alloc.c); it must behave as any
    -- string, outlive the process object, and leave no descriptor open.
    -- Descriptors counted after a full collection: earlier specs' garbage
    -- (files not yet closed) must not close during this one and hide a leak.
    local function fds()
      collectgarbage()
      collectgarbage()
      return H.fd_count()
    end
    local before = fds()
    local sizes = { 3 * 1024 * 1024 + 7, 5 * 1024 * 1024 }
    local outs = {}
    for i, n in ipairs(sizes) do
      local r = pm.run(H.cmd("spew", tostring(n)), { max_buffer = 4 * 1024 * 1024 })
      outs[i] = r.stdout
      assert.are.equal(math.min(n, 4 * 1024 * 1024), #r.stdout)
      assert.are.equal(n > 4 * 1024 * 1024, r.truncated)
    end
    collectgarbage()
    collectgarbage()
    local want = ("0123456789abcdef"):rep(4096)
    for i, out in ipairs(outs) do
      assert.is_true(out == want:rep(#out // #want) .. want:sub(1, #out % #want), "capture " .. i)
      local t = { [out] = i }
      assert.are.equal(i, t[want:rep(#out // #want) .. want:sub(1, #out % #want)])
    end
    assert.are.equal(("0123456789abcdef"):rep(2), outs[1]:sub(-7 - 32, -8))
    assert.are.equal(before, fds())
    -- Under procrun each string is a mapping of its capture's memfd, gone
    -- with the string; a stock lua5.4 copies.
    local function mapped()
      local n = 0
      for l in io.lines("/proc/self/maps") do
        if l:find("memfd:procmon-capture", 1, true) then n = n + 1 end
      end
      return n
    end
    assert.are.equal(H.lua == H.procrun and 2 or 0, mapped())
    outs = nil
    -- (a killed child's Process, and so its Result, lives until its
    -- handles have closed in the loop)
    assert.is_true(H.eventually(function()
      collectgarbage()
      collectgarbage()
      return mapped() == 0
    end))
  end)

  it("keeps a big capture in plain memory under a file-size limit", function()
    -- A memfd counts against RLIMIT_FSIZE: growing one past the limit
    -- raised SIGXFSZ, which killed procrun.
    local code = ("local pm = require 'procmon'; local r = pm.run({ %q, %q, '3145728' });"
      .. " io.write(#r.stdout, ' ', r.code)"):format(H.lua, H.fixture("spew"))
    local r = assert(pm.run({ "sh", "-c", 'ulimit -f 1024 && exec "$@"', "sh", H.procrun, "-e", code }))
    assert.are.equal("", r.stderr)
    assert.are.same({ 0, "3145728 0" }, { r.code, r.stdout })
  end)

  it("goes on in plain memory when the capture's memfd cannot grow", function()
    -- The file-size limit is lowered (XFSZ ignored) once the capture is in
    -- its memfd: growing it fails with EFBIG, the bytes move back to plain
    -- memory and the capture goes on (it used to abort).
    local child = ('"$0" "$1" 1500000; sleep 1; "$0" "$1" 3000000')
    local code = ([[
      local pm = require "procmon"
      local p = assert(pm.spawn({ "sh", "-c", %q, %q, %q }))
      pm.sleep(0.3)
      assert(pm.run({ "prlimit", "--pid", tostring(require("procmon.mondir").self()),
        "--fsize=2000000" }).ok)
      local r = p:wait()
      local mapped = false
      for l in io.lines("/proc/self/maps") do
        mapped = mapped or l:find("memfd:procmon-capture", 1, true) ~= nil
      end
      io.write(#r.stdout, " ", r.code, " ", tostring(mapped))
    ]]):format(child, H.lua, H.fixture("spew"))
    local r = assert(pm.run({ "sh", "-c", "trap '' XFSZ; exec \"$@\"", "sh", H.procrun, "-e", code }))
    assert.are.equal("", r.stderr)
    assert.are.same({ 0, "4500000 0 false" }, { r.code, r.stdout })
  end)

  it("is binary safe", function()
    local data = {}
    for i = 0, 255 do data[#data + 1] = string.char(i) end
    data = table.concat(data):rep(10)
    local r = pm.run(H.cmd("cat"), { input = data })
    assert.are.equal(data, r.stdout)
  end)

  it("stops at max_buffer: output kept to the limit, child killed, flagged", function()
    local r = pm.run(H.cmd("spew", tostring(10 * 1024 * 1024)), { max_buffer = 1000 })
    assert.are.equal(1000, #r.stdout)
    assert.is_true(r.truncated)
    assert.are.equal("max_buffer", r.reason)
  end)

  it("keeps a max_buffer beyond 4 GiB whole (no 32-bit wrap)", function()
    -- Cut to 32 bits, 2^32 + 1000 would be 1000 and 2^33 + 2 would be 2:
    -- 5000 bytes of output would then be truncated.
    for _, limit in ipairs({ 2 ^ 32 + 1000, 2 ^ 33 + 2, math.tointeger(2 ^ 40) }) do
      local r = pm.run(H.cmd("spew", "5000"), { max_buffer = limit })
      assert.are.equal(5000, #r.stdout)
      assert.is_false(r.truncated)
      assert.are.equal("exit", r.reason)
    end
  end)

  it("does not flag output that fits exactly", function()
    local r = pm.run(H.cmd("spew", "1000"), { max_buffer = 1000 })
    assert.are.equal(1000, #r.stdout)
    assert.is_false(r.truncated)
    assert.are.equal("exit", r.reason)
  end)

  it("delivers chunks to on_stdout and captures nothing then", function()
    local chunks = {}
    local r = pm.run(H.cmd("spew", "300000"), { on_stdout = function(c) chunks[#chunks + 1] = c end })
    assert.are.equal(300000, #table.concat(chunks))
    assert.is_nil(r.stdout)
    assert.are.equal("", r.stderr)
  end)

  describe("lines", function()
    local function lines_of(...)
      local got = {}
      pm.run(H.cmd("pieces", ...), { lines = true, on_stdout = function(l) got[#got + 1] = l end })
      return got
    end

    it("splits on \\n and \\r\\n and delivers a final unterminated line", function()
      assert.are.same({ "a", "b", "", "c" }, lines_of("a\\nb\\r\\n\\nc"))
    end)

    it("joins lines split across chunks, \\r\\n split too", function()
      assert.are.same({ "hello world", "x" }, lines_of("hel", "lo wor", "ld\\r", "\\nx\\n"))
    end)

    it("keeps multi-byte UTF-8 split across chunks intact", function()
      -- "é" is C3 A9 and "€" is E2 82 AC; each is cut between two writes.
      assert.are.same({ "caf\xC3\xA9", "\xE2\x82\xAC5" }, lines_of("caf\\xC3", "\\xA9\\n\\xE2\\x82", "\\xAC5\\n"))
    end)

    it("streams stderr lines too", function()
      local got = {}
      pm.run({ "sh", "-c", "printf 'e1\\ne2' >&2" },
        { lines = true, on_stderr = function(l) got[#got + 1] = l end })
      assert.are.same({ "e1", "e2" }, got)
    end)
  end)

  describe("timeouts", function()
    it("kills the whole tree on timeout", function()
      local r = pm.run({ "sh", "-c", "sleep 100 | cat" }, { timeout = 0.2 })
      assert.are.equal("timeout", r.reason)
      assert.is_true(r.timed_out)
      assert.is_nil(r.code)
      assert.are.equal("TERM", r.signal)
      assert.are.same({}, H.leftovers(r.pid))
    end)

    it("escalates to SIGKILL after kill_grace, even past the leader's exit", function()
      local t0 = pm.time()
      local r = pm.run(H.cmd("ignore_term"), { timeout = 0.2, kill_grace = 0.5 })
      assert.are.equal("timeout", r.reason)
      assert.is_true(H.eventually(function() return #H.group_members(r.pid) == 0 end, 5))
      assert.is_true(pm.time() - t0 >= 0.65, "a member ignoring TERM died before the grace")
    end)

    it("uses kill_signal", function()
      local r = pm.run({ "sh", "-c", "exec sleep 30" }, { timeout = 0.1, kill_signal = "INT" })
      assert.are.equal("INT", r.signal)
    end)

    it("kills on idle_timeout when output stops", function()
      local r = pm.run({ "sh", "-c", "echo a; sleep 0.05; echo b; sleep 30" }, { idle_timeout = 0.3 })
      assert.are.equal("idle_timeout", r.reason)
      assert.is_true(r.timed_out)
      assert.are.equal("a\nb\n", r.stdout)
    end)

    it("does not fire idle_timeout while output flows", function()
      local r = pm.run({ "sh", "-c", "for i in 1 2 3 4 5 6; do echo $i; sleep 0.1; done" },
        { idle_timeout = 0.4 })
      assert.are.equal("exit", r.reason)
      assert.are.equal(0, r.code)
    end)
  end)

  it("does not hang when a grandchild keeps the pipe open", function()
    -- The bound is loose (a loaded machine is slow), far below the
    -- grandchild's 30 s: the point is "not held until it exits".
    local t0 = pm.time()
    local r = pm.run({ "sh", "-c", "sleep 30 & echo started" })
    assert.is_true(pm.time() - t0 < 15)
    assert.are.equal("started\n", r.stdout)
    assert.are.equal(0, r.code)
    os.execute("kill -KILL -" .. r.pid .. " 2>/dev/null")
  end)
end)
