-- procmon.session: reading Claude Code payloads from stdin (never waiting
-- for an EOF that may not come), the type-checked fields, and the tracker
-- stored through the cache.
local pm = require "procmon"
local H = require "helpers"
local json = require "procmon.json"

local FIX = H.root .. "/spec/fixtures/claude-code/"

local function fixture(name) return H.read_file(FIX .. name) end

--- Runs cc_read.lua with `src` on stdin (a string is the data, a table a
--- pm.spawn stdin mode); returns its stdout line and the seconds the read
--- took (measured in the child).
local function read_in_child(src, kind, timeout, max)
  local opts = { timeout = 30 }
  if type(src) == "string" then opts.input = src else opts.stdin = src end
  local r = assert(pm.run(H.cmd("cc_read", kind or "session", timeout, max), opts))
  assert.are.equal(0, r.code, r.stderr)
  return r.stdout:match("^(.-)\n"), tonumber(r.stderr:match("([%d.]+)\n$"))
end

local function parse(s) return pm.session.read{ input = s } end

describe("pm.session.read", function()
  after_each(H.assert_no_live_handles)

  it("reads every statusline and hook fixture", function()
    for _, dir in ipairs({ "statusline", "hooks" }) do
      local ls = io.popen("ls " .. FIX .. dir)
      for name in ls:lines() do
        local data, err = parse(fixture(dir .. "/" .. name))
        assert.is_table(data, name .. ": " .. tostring(err))
        assert.is_string(data.session_id)
      end
      ls:close()
    end
  end)

  it("stops at the end of the first value when stdin stays open", function()
    -- stdin = "pipe" and never closed: Claude Code's open pipe.
    local p = assert(pm.spawn(H.cmd("cc_read", "session", "20"), { stdin = "pipe", timeout = 30 }))
    assert(p:write(fixture("statusline/full-v2.1.240.json")))
    local r = p:wait()
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("ok 3f2a9c1e-7b4d-4e21-9a0f-5c6d7e8f9a10 90", r.stdout:match("^(.-)\n"))
    -- Far less than the 20 s deadline: it did not wait for EOF.
    assert.is_true(tonumber(r.stderr:match("([%d.]+)\n$")) < 10)
  end)

  it("gives up at the deadline when no complete value comes", function()
    for _, chunk in ipairs({ "", '{"session_id":"abc", "model": {' }) do
      local p = assert(pm.spawn(H.cmd("cc_read", "session", "0.3"), { stdin = "pipe", timeout = 30 }))
      if chunk ~= "" then assert(p:write(chunk)) end
      local r = p:wait()
      assert.are.equal(0, r.code, r.stderr)
      if chunk == "" then
        assert.matches("^err stdin: no input within 0.3s %(stdin still open%)", r.stdout)
      else
        assert.matches("^err stdin: incomplete JSON after 0.3s %(stdin still open%)", r.stdout)
      end
      local took = tonumber(r.stderr:match("([%d.]+)\n$"))
      assert.is_true(took >= 0.25 and took < 10, "took " .. took)
    end
  end)

  it("defaults to a 1 s deadline", function()
    local p = assert(pm.spawn(H.cmd("cc_read"), { stdin = "pipe", timeout = 30 }))
    local r = p:wait()
    assert.matches("^err stdin: no input within 1s", r.stdout)
    assert.is_true(tonumber(r.stderr:match("([%d.]+)\n$")) >= 0.9)
  end)

  it("works when stdin is a pipe, a file or /dev/null", function()
    local payload = FIX .. "hooks/PreToolUse-bash.json"
    assert.matches("^ok 3f2a9c1e", (read_in_child(fixture("hooks/PreToolUse-bash.json"))))
    assert.matches("^ok 3f2a9c1e", (read_in_child({ file = payload })))
    -- stdin "null" (the default) under a 20 s deadline: EOF ends the read.
    local line, took = read_in_child(nil, "session", "20")
    assert.are.equal("err stdin: empty input nil", line)
    assert.is_true(took < 10, "waited on /dev/null")
  end)

  it("accepts the first of two values, and pretty-printed JSON", function()
    local data = assert(parse(fixture("bad/two-values.json")))
    assert.are.equal("d3ebc580-85b8-4b62-8633-40991363c8ce", data.session_id)
    assert.are.equal(22, data.context_window.used_percentage)
    assert.are.equal("ok d3ebc580-85b8-4b62-8633-40991363c8ce 89",
      (read_in_child(fixture("bad/two-values.json"))))
    local pretty = assert(parse(fixture("bad/pretty-printed.json")))
    local compact = assert(parse(fixture("statusline/later-render-v2.1.226.json")))
    assert.are.same(compact, pretty)
  end)

  it("gives one-line errors for bad input", function()
    local cases = {
      ["bad/empty.txt"] = "stdin: empty input",
      ["bad/truncated.json"] = "stdin: truncated JSON (910 bytes, then EOF)",
      ["bad/array.json"] = "stdin: expected a JSON object, got an array",
      ["bad/null.json"] = "stdin: expected a JSON object, got null",
      ["bad/string.json"] = "stdin: expected a JSON object, got a string",
      ["bad/not-json.txt"] = "stdin: not JSON: Welcome back, dev! Last login: M",
      ["bad/empty-object.json"] = "stdin: no session_id in the payload",
      ["bad/session-id-number.json"] = "stdin: unusable session_id (a number)",
      ["bad/session-id-blank.json"] = "stdin: unusable session_id (blank)",
    }
    for name, want in pairs(cases) do
      local data, err = parse(fixture(name))
      assert.is_nil(data, name)
      assert.are.equal(want, err, name)
      assert.is_nil(err:find("\n"))
      assert.are.equal("err " .. want .. " nil", (read_in_child(fixture(name))), name)
    end
    assert.matches("^stdin: invalid JSON", select(2, parse('{"session_id": nope}')))
  end)

  it("refuses more than max_bytes; a 10 MB payload passes the default", function()
    local big = '{"session_id":"big","transcript_path":"' .. ("x"):rep(10 * 1000 * 1000) .. '"}\n'
    assert.are.equal("ok big 10000000", (read_in_child(big, "session", "20")))
    assert.are.equal("err stdin: input larger than 1048576 bytes: EFBIG: file too large EFBIG",
      (read_in_child(big, "session", "20", tostring(1024 * 1024))))
    local data, err, code = pm.session.read{ input = big, max_bytes = 100 }
    assert.is_nil(data)
    assert.are.equal("stdin: input larger than 100 bytes", err)
    assert.are.equal("EFBIG", code)
  end)

  it("keeps invalid UTF-8 bytes as they are (clean them for a terminal)", function()
    local data = assert(parse(fixture("bad/invalid-utf8.json")))
    assert.are.equal("/home/dev/caf\xC3\x28", data.cwd)
  end)

  it("raises on bad options", function()
    assert.has_error(function() pm.session.read{ timeout = -1 } end,
      "bad argument #1 to 'read' (option 'timeout': non-negative number expected)")
    assert.has_error(function() pm.session.read{ bogus = 1 } end,
      "bad argument #1 to 'read' (unknown option 'bogus')")
    assert.has_error(function() pm.session.read{ max_bytes = 1.5 } end,
      "bad argument #1 to 'read' (option 'max_bytes': non-negative integer expected)")
  end)
end)

describe("pm.session.info", function()
  it("computes the context usage as the fixtures' README says", function()
    local want = {
      ["full-v2.1.240.json"] = 10, ["first-render-v2.1.226.json"] = false,
      ["later-render-v2.1.226.json"] = 22, ["oldest-v1.0.80-docs.json"] = false,
      ["worktree-vim-insert.json"] = 75, ["minimal.json"] = 25,
    }
    for name, pct in pairs(want) do
      local info = pm.session.info(assert(parse(fixture("statusline/" .. name))))
      assert.are.equal(pct or nil, info.context_usage, name)
    end
    local legacy = pm.session.info(assert(parse(fixture("statusline/legacy-v2.0.76.json"))))
    assert.are.equal("15.69", ("%.2f"):format(legacy.context_usage))  -- not total_input_tokens
  end)

  it("keeps integers integers: a 200000 window prints 200000", function()
    local info = pm.session.info(assert(parse(fixture("statusline/later-render-v2.1.226.json"))))
    assert.are.equal("integer", math.type(info.context_window_size))
    assert.are.equal("200000", tostring(info.context_window_size))
    assert.are.equal('{"size":200000}', json.encode({ size = info.context_window_size }))
  end)

  it("reads wrong types as absent, and a string model as the model id", function()
    local info = pm.session.info(assert(parse(fixture("bad/wrong-types.json"))))
    assert.are.equal("5e0c7a4b-1d2e-4f30-9a8b-7c6d5e4f3a21", info.session_id)
    assert.are.equal("x", info.model_id)
    assert.is_nil(info.model_name)
    assert.is_nil(info.context_usage)
    assert.is_nil(info.cost_usd)
    assert.is_nil(info.duration_ms)
    assert.is_nil(info.agent_name)
    assert.is_nil(info.vim_mode)
    assert.is_nil(info.version)
    assert.are.equal("/home/dev/src/webapp", info.cwd)  -- from cwd, not the bad workspace
  end)

  it("reads numbers sent as strings", function()
    local info = pm.session.info({ session_id = "s", context_window = { used_percentage = "42" },
      cost = { total_cost_usd = "1.5" } })
    assert.are.equal(42, info.context_usage)
    assert.are.equal(1.5, info.cost_usd)
  end)

  it("tells hook events from the statusline's old Status", function()
    assert.is_nil(pm.session.info(assert(parse(fixture("statusline/oldest-v1.0.80-docs.json")))).event)
    local ev = pm.session.info(assert(parse(fixture("hooks/SubagentStart-explore.json"))))
    assert.are.equal("SubagentStart", ev.event)
    assert.are.equal("a4d2c8f1e0b3a297", ev.agent_id)
  end)
end)

describe("pm.session.tracker", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
    H.assert_no_live_handles()
  end)

  local function entry(id)
    local path = dir .. "/procmon:session:" .. id .. ".json"
    return assert(json.decode(H.read_file(path)))
  end

  local FULL = "3f2a9c1e-7b4d-4e21-9a0f-5c6d7e8f9a10"

  it("tracks a session: started_at kept, TTL refreshed, fields from the payload", function()
    local t = assert(pm.session.tracker{ ttl = 600, dir = dir, refresh = 0 })
    local data = assert(parse(fixture("statusline/full-v2.1.240.json")))
    local a = assert(t:track(data))
    assert.are.equal(FULL, a.session_id)
    assert.are.equal("claude-opus-4-6[1m]", a.model_id)
    assert.are.equal("Opus 4.6 (1M context)", a.model_name)
    assert.are.equal("security-reviewer", a.agent_name)
    assert.are.equal(10, a.context_usage)
    assert.are.equal(a.started_at, a.updated_at)
    local exp1 = entry(FULL).expires_at
    assert.is_true(exp1 > pm.time() + 590)
    pm.sleep(0.05)
    local b = assert(t:track(data))
    assert.are.equal(a.started_at, b.started_at)
    assert.is_true(b.updated_at > a.updated_at)
    assert.is_true(entry(FULL).expires_at > exp1, "the TTL was not refreshed")
    assert.are.same(b, t:get(FULL))
  end)

  it("writes an unchanged record again only after `refresh` seconds", function()
    local t = assert(pm.session.tracker{ ttl = 600, dir = dir, refresh = 0.3 })
    local data = assert(parse(fixture("statusline/later-render-v2.1.226.json")))
    local id = data.session_id
    local a = assert(t:track(data))
    local file = H.read_file(dir .. "/procmon:session:" .. id .. ".json")
    pm.sleep(0.01)
    local b = assert(t:track(data))
    assert.is_true(b.updated_at > a.updated_at)
    assert.are.equal(a.started_at, b.started_at)
    assert.are.equal(file, H.read_file(dir .. "/procmon:session:" .. id .. ".json"), "rewritten")
    -- A change is written at once...
    data.context_window.used_percentage = 40
    assert.are.equal(40, assert(t:track(data)).context_usage)
    assert.are.equal(40, t:get(id).context_usage)
    -- ...and an unchanged record once `refresh` has passed, with a new TTL.
    local exp = entry(id).expires_at
    pm.sleep(0.35)
    assert(t:track(data))
    assert.is_true(entry(id).expires_at > exp + 0.3)
    assert.are.equal(0.3, t.refresh)
    assert.are.equal(10, assert(pm.session.tracker{ ttl = 600, dir = dir }).refresh)
    assert.are.equal(60, assert(pm.session.tracker{ ttl = 86400, dir = dir }).refresh)
  end)

  it("is seen by a later process", function()
    local t = assert(pm.session.tracker{ dir = dir })
    local rec = assert(t:track(assert(parse(fixture("statusline/later-render-v2.1.226.json")))))
    local r = assert(pm.run(H.cmd("cc_tracker", dir, rec.session_id)))
    assert.are.equal(0, r.code, r.stderr)
    local line, active = r.stdout:match("^(.-)\n(.-)\n$")
    local seen = assert(json.decode(line))
    assert.are.equal(rec.started_at, seen.started_at)
    assert.are.equal(22, seen.context_usage)
    assert.are.equal("Haiku 4.5", seen.model_name)
    assert.are.equal("true", active)
    assert.matches("^nil\nfalse\n$", assert(pm.run(H.cmd("cc_tracker", dir, "nope"))).stdout)
  end)

  it("computes the context usage when the percentage is absent", function()
    local t = assert(pm.session.tracker{ dir = dir })
    local rec = assert(t:track(assert(parse(fixture("statusline/legacy-v2.0.76.json")))))
    assert.are.equal("15.69", ("%.2f"):format(rec.context_usage))
    -- A later render with the usage unknown (null) says unknown.
    local first = assert(t:track(assert(parse(fixture("statusline/first-render-v2.1.226.json")))))
    assert.is_nil(first.context_usage)
  end)

  it("tolerates missing optional fields and keeps what hooks do not send", function()
    local t = assert(pm.session.tracker{ dir = dir })
    local m = assert(t:track(assert(parse(fixture("statusline/minimal.json")))))
    assert.are.equal("test-session-abc", m.session_id)
    assert.are.equal("Opus", m.model_name)
    assert.is_nil(m.model_id)
    assert.are.equal(25, m.context_usage)
    assert(t:track(assert(parse(fixture("statusline/full-v2.1.240.json")))))
    -- A hook payload has no model or context window: the last ones stay.
    local h = assert(t:track(assert(parse(fixture("hooks/PreToolUse-bash.json")))))
    assert.are.equal(10, h.context_usage)
    assert.are.equal("claude-opus-4-6[1m]", h.model_id)
    -- No usable session id: an error, nothing stored.
    local rec, err = t:track({ session_id = "  " })
    assert.is_nil(rec)
    assert.are.equal("track: no usable session_id", err)
    assert.are.equal(2, #t:list())
  end)

  it("follows subagents and the end of a session", function()
    local t = assert(pm.session.tracker{ dir = dir })
    local agent = "a4d2c8f1e0b3a297"
    assert.is_false(t:is_agent_active(agent))
    local rec = assert(t:track(assert(parse(fixture("hooks/SubagentStart-explore.json")))))
    assert.are.equal("Explore", rec.agents[agent].agent_type)
    assert.is_true(t:is_agent_active(agent))
    assert.is_true(t:is_agent_active(FULL))
    rec = assert(t:track(assert(parse(fixture("hooks/SubagentStop-explore.json")))))
    assert.is_nil(rec.agents[agent])
    assert.is_false(t:is_agent_active(agent))
    assert(t:track(assert(parse(fixture("hooks/SessionEnd-prompt-input-exit.json")))))
    assert.is_false(t:is_agent_active(FULL))
    assert.is_number(t:get(FULL).ended_at)
    -- A SessionStart (resume) makes it active again.
    assert(t:track(assert(parse(fixture("hooks/SessionStart-startup.json")))))
    assert.is_true(t:is_agent_active(FULL))
  end)

  it("lists sessions, most recent first; expired ones are gone", function()
    local t = assert(pm.session.tracker{ dir = dir, ttl = 0.3 })
    assert(t:track(assert(parse(fixture("statusline/minimal.json")))))
    pm.sleep(0.02)
    assert(t:track(assert(parse(fixture("statusline/full-v2.1.240.json")))))
    local l = t:list()
    assert.are.equal(2, #l)
    assert.are.equal(FULL, l[1].session_id)
    assert.are.equal("test-session-abc", l[2].session_id)
    assert.is_true(H.eventually(function() return #t:list() == 0 end, 5))
    assert.is_nil(t:get(FULL))
    assert.is_false(t:is_agent_active(FULL))
  end)

  it("raises on misuse", function()
    assert.has_error(function() pm.session.tracker{ ttl = 0 } end,
      "bad argument #1 to 'tracker' (option 'ttl': positive number of seconds expected)")
    assert.has_error(function() pm.session.tracker{ refresh = -1 } end,
      "bad argument #1 to 'tracker' (option 'refresh': non-negative number of seconds expected)")
    assert.has_error(function() pm.session.tracker{ nope = 1 } end,
      "bad argument #1 to 'tracker' (unknown option 'nope')")
    local t = assert(pm.session.tracker{ dir = dir })
    assert.has_error(function() t:track("x") end, "bad argument #1 to 'track' (table expected, got string)")
    assert.has_error(function() t:get(1) end, "bad argument #1 to 'get' (string expected, got number)")
    assert.has_error(function() t.get(nil, "x") end,
      "calling 'get' on bad self (procmon.SessionTracker expected, got nil)")
  end)
end)
