-- Memory stays bounded by what the user asked for: a line callback never
-- holds more than max_line bytes of a line, and p:write waits for a child
-- that does not read instead of queueing without limit.
local pm = require "procmon"
local H = require "helpers"

--- The calls a line callback gets: { {piece, more}, ... }.
local function line_calls(cmd, opts)
  local calls = {}
  opts.lines = true
  opts.on_stdout = function(l, more) calls[#calls + 1] = { l, more } end
  local r = assert(pm.run(cmd, opts))
  return calls, r
end

describe("bounds", function()
  after_each(H.assert_no_live_handles)

  describe("lines", function()
    it("delivers a line longer than max_line in pieces flagged as going on", function()
      local calls, r = line_calls(H.cmd("spew", "300000"), { max_line = 65536 })
      assert.are.equal(0, r.code)
      local total = 0
      for i, c in ipairs(calls) do
        assert.is_true(#c[1] <= 65536)
        if i < #calls then assert.are.equal(65536, #c[1]) end
        assert.are.equal(i < #calls or nil, c[2])
        total = total + #c[1]
      end
      assert.are.equal(5, #calls)
      assert.are.equal(300000, total)
    end)

    it("bounds a line without newline to 1 MiB by default", function()
      local calls = line_calls(H.cmd("spew", tostring(3 * 1048576 + 5)), {})
      assert.are.equal(4, #calls)
      for i = 1, 3 do
        assert.are.equal(1048576, #calls[i][1])
        assert.is_true(calls[i][2])
      end
      assert.are.same({ ("0123456789abcdef"):sub(1, 5) }, { calls[4][1], calls[4][2] })
    end)

    it("bounds lines by max_buffer when that is smaller", function()
      local calls = line_calls(H.cmd("spew", "2500"), { max_buffer = 1000 })
      assert.are.equal(3, #calls)
      assert.are.same({ 1000, 1000, 500 }, { #calls[1][1], #calls[2][1], #calls[3][1] })
    end)

    it("never splits a multi-byte character and still strips \\r\\n", function()
      local calls = line_calls(H.cmd("pieces", "h\\xC3\\xA9llo w\\xC3\\xB6rld\\r\\nok\\n"), { max_line = 2 })
      local got = {}
      for _, c in ipairs(calls) do got[#got + 1] = c[1] .. (c[2] and "+" or "") end
      assert.are.same({ "h+", "\xC3\xA9+", "ll+", "o +", "w+", "\xC3\xB6+", "rl+", "d", "ok" }, got)
    end)

    it("keeps whole lines of exactly max_line bytes whole", function()
      local calls = line_calls(H.cmd("pieces", "abcd\\nefgh", "\\n"), { max_line = 4 })
      assert.are.same({ { "abcd" }, { "efgh" } }, calls)
    end)

    it("rejects max_line = 0", function()
      local ok, err = pcall(pm.spawn, H.cmd("echo"), { max_line = 0, lines = true })
      assert.is_false(ok)
      assert.is_truthy(err:find("option 'max_line': must be at least 1 byte", 1, true), err)
    end)
  end)

  describe("p:write to a child that does not read", function()
    local chunk = ("x"):rep(65536)

    it("waits inside a task once 1 MiB is queued, and fails EPIPE when the child dies", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30"), { stdin = "pipe" }))
      local n, done = 0, false
      local t = pm.task(function()
        for i = 1, 100 do
          local ok, err, code = p:write(chunk)
          if not ok then return err, code end
          n = i
        end
        done = true
      end)
      pm.sleep(0.3)
      assert.is_false(done)
      -- the pipe (64 KiB to 1 MiB) plus the 1 MiB mark, in 64 KiB writes
      assert.is_true(n >= 16 and n <= 34, "writes queued: " .. n)
      p:kill("KILL")
      local _, code = t:wait()
      assert.are.equal("EPIPE", code)
      assert.is_false(done)
      assert.are.equal("KILL", p:wait().signal)
    end)

    it("returns EAGAIN in a plain callback, where it cannot wait", function()
      local p = assert(pm.spawn(H.cmd("sleep", "30"), { stdin = "pipe" }))
      pm.task(function() for _ = 1, 100 do if not p:write(chunk) then return end end end)
      pm.sleep(0.1)
      local res
      pm.run(H.cmd("exit", "0"), { on_exit = function() res = table.pack(p:write(chunk)) end })
      assert.are.same({ "EAGAIN", 3 }, { res[3], res.n })
      assert.is_nil(res[1])
      p:kill("KILL")
      p:wait()
    end)

    it("lets a reading child have everything, blocking outside tasks", function()
      local p = assert(pm.spawn(H.cmd("cat"), { stdin = "pipe", stdout = "null" }))
      for _ = 1, 64 do assert.is_true(p:write(chunk)) end
      p:close_stdin()
      assert.are.equal(tostring(64 * 65536) .. "\n", p:wait().stderr)
    end)
  end)
end)
