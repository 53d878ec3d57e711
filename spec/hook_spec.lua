-- procmon.hook: the JSON Claude Code accepts (checked against the fixtures'
-- hook-output/), exit codes, errors that never reach stdout as a traceback,
-- and background work that lets go of the hook's pipes.
local pm = require "procmon"
local H = require "helpers"
local json = require "procmon.json"

local FIX = H.root .. "/spec/fixtures/claude-code/"

local function fixture(name) return H.read_file(FIX .. name) end
local function expected(name) return assert(json.decode(fixture("hook-output/" .. name))) end

--- Runs cc_hook.lua MODE ARG with the payload on stdin.
local function hook(payload, mode, arg, opts)
  opts = opts or {}
  opts.input = payload
  opts.timeout = opts.timeout or 30
  return assert(pm.run(H.cmd("cc_hook", mode, arg), opts))
end

local function one_line(s) return s:match("^[^\n]*\n$") ~= nil end

describe("pm.hook.output", function()
  it("builds the documented shapes of hook-output/", function()
    local o = pm.hook.output
    assert.are.same(expected("PreToolUse-deny.json"), o{ event = "PreToolUse", decision = "deny",
      reason = "Destructive command blocked by procrun policy: rm -rf outside the project" })
    assert.are.same(expected("PreToolUse-ask.json"), o{ event = "PreToolUse", decision = "ask",
      reason = "git push --force rewrites remote history; confirm first" })
    assert.are.same(expected("PreToolUse-allow-updated-input.json"), o{ event = "PreToolUse",
      decision = "allow", reason = "read-only git command",
      updated_input = { command = "git status --porcelain", description = "Show working tree status" },
      context = "Branch feat/auth has 3 unpushed commits." })
    assert.are.same(expected("PermissionRequest-allow-rule.json"), o{ event = "PermissionRequest",
      decision = "allow", permissions = { { type = "addRules",
        rules = { { toolName = "Bash", ruleContent = "npm test" } },
        behavior = "allow", destination = "session" } } })
    assert.are.same(expected("Stop-block.json"), o{ event = "Stop", decision = "block",
      reason = "Tests are failing: 2 failures in spec/cache_spec.lua. Fix them before finishing." })
    assert.are.same(expected("SessionStart-context-title.json"), o{ event = "SessionStart",
      context = "procrun: 2 background jobs still running from the previous session (build #41, watcher).",
      title = "webapp: auth-refactor" })
    assert.are.same(expected("continue-false.json"), o{ event = "PostToolUse", continue = false,
      stop_reason = "Build failed; fix errors before continuing", system_message = "procrun: build exited 1" })
  end)

  it("caps strings at 10,000 characters without cutting one", function()
    local out = pm.hook.output{ event = "PreToolUse", decision = "deny", reason = ("é"):rep(6000) }
    local r = out.hookSpecificOutput.permissionDecisionReason
    assert.is_true(#r <= 10000)
    assert.is_truthy(utf8.len(r))
    assert.matches("…$", r)
  end)

  it("replaces invalid UTF-8 in strings (the answer must be valid JSON text)", function()
    local out = pm.hook.output{ event = "PreToolUse", decision = "deny", reason = "rm /home/dev/caf\xC3\x28 x\xFF" }
    assert.are.equal("rm /home/dev/caf\u{FFFD}( x\u{FFFD}", out.hookSpecificOutput.permissionDecisionReason)
    assert.are.equal("ok é", pm.hook.output{ event = "Stop", decision = "block", reason = "ok é" }.reason)
  end)

  it("raises on what the event does not take", function()
    local cases = {
      { { event = "PreToolUse", decision = "block" }, "decision 'block' is not one PreToolUse accepts" },
      { { event = "Stop", decision = "deny", reason = "x" }, "decision 'deny' is not one Stop accepts (only 'block')" },
      { { event = "Stop", decision = "block" }, "decision 'block' needs a reason" },
      { { event = "SessionEnd", context = "x" }, "SessionEnd takes no additional context" },
      { { event = "PreToolUse", title = "x" }, "PreToolUse takes no session title" },
      { { event = "Notification", decision = "block", reason = "x" }, "Notification takes no decision" },
      { { event = "PreToolUse", reason = "x" }, "reason needs a decision" },
      { { event = "PostToolUse", updated_input = {} }, "updated_input needs PreToolUse" },
      { { decision = "allow" }, "no event: pass event =" },
      { { event = "PreToolUse", decison = "allow" }, "unknown field 'decison'" },
      { { event = "PreToolUse", continue = "no" }, "field 'continue': boolean expected, got string" },
    }
    local saved = pm.hook.event
    pm.hook.event = nil
    for _, c in ipairs(cases) do
      local ok, err = pcall(pm.hook.output, c[1])
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'output' (" .. c[2], err, 1, true)
    end
    pm.hook.event = saved
  end)
end)

describe("hook scripts", function()
  after_each(H.assert_no_live_handles)

  it("respond prints one JSON object for the event read, and exits 0", function()
    local r = hook(fixture("hooks/PreToolUse-bash.json"), "respond",
      '{"decision":"deny","reason":"no rm -rf"}')
    assert.are.equal(0, r.code, r.stderr)
    assert.is_true(one_line(r.stdout), r.stdout)
    assert.are.same({ hookSpecificOutput = { hookEventName = "PreToolUse", permissionDecision = "deny",
      permissionDecisionReason = "no rm -rf" } }, json.decode(r.stdout))
    assert.are.equal("", r.stderr)
  end)

  it("block writes the reason to stderr and exits 2", function()
    local r = hook(fixture("hooks/PreToolUse-bash.json"), "block", "rm -rf is not allowed")
    assert.are.equal(2, r.code)
    assert.are.equal("", r.stdout)
    assert.are.equal("rm -rf is not allowed\n", r.stderr)
  end)

  it("run answers with what the function returns", function()
    local r = hook(fixture("hooks/PreToolUse-minimal.json"), "run-allow")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ hookSpecificOutput = { hookEventName = "PreToolUse", permissionDecision = "allow",
      permissionDecisionReason = "ok Bash" } }, json.decode(r.stdout))
    local n = hook(fixture("hooks/Stop-hook-active.json"), "run-nil")
    assert.are.equal(0, n.code, n.stderr)
    assert.are.equal("", n.stdout)
  end)

  it("an error in the hook is one line on stderr, nothing on stdout, exit 1", function()
    local r = hook(fixture("hooks/PreToolUse-bash.json"), "run-error")
    assert.are.equal(1, r.code)
    assert.are.equal("", r.stdout)
    assert.is_true(one_line(r.stderr), r.stderr)
    assert.matches("^cc_hook.lua: .*guard broke on PreToolUse\n$", r.stderr)
    local b = hook(fixture("hooks/PreToolUse-bash.json"), "run-error-block")
    assert.are.equal(2, b.code)
    assert.are.equal("", b.stdout)
  end)

  it("bad input: a one-line error and a non-zero exit, never a traceback", function()
    local cases = { "bad/empty.txt", "bad/truncated.json", "bad/array.json", "bad/null.json",
      "bad/string.json", "bad/not-json.txt", "bad/empty-object.json", "bad/session-id-number.json",
      "bad/session-id-blank.json", "statusline/full-v2.1.240.json" }
    for _, name in ipairs(cases) do
      local r = hook(fixture(name), "run-allow")
      assert.are.equal(1, r.code, name)
      assert.are.equal("", r.stdout, name)
      assert.is_true(one_line(r.stderr), name .. ": " .. r.stderr)
      assert.matches("^cc_hook.lua: stdin: ", r.stderr, 1, false)
    end
    local big = '{"session_id":"s","hook_event_name":"PreToolUse","x":"' .. ("y"):rep(17 * 1024 * 1024) .. '"}'
    -- A long deadline: 17 MB through a pipe is slow under ASan on a busy machine.
    local r = hook(big, "run-allow", nil, { env = { CC_TIMEOUT = "30" } })
    assert.are.equal(1, r.code)
    assert.matches("input larger than 16777216 bytes", r.stderr)
  end)

  it("does not wait for an EOF that never comes", function()
    local p = assert(pm.spawn(H.cmd("cc_hook", "run-allow"), { stdin = "pipe", timeout = 30 }))
    assert(p:write(fixture("hooks/PreToolUse-bash.json")))
    local r = p:wait()
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("allow", json.decode(r.stdout).hookSpecificOutput.permissionDecision)
    assert.is_true(r.duration < 10)
  end)

  it("a stop signal is not swallowed by run", function()
    local sleeping = false
    local p = assert(pm.spawn(H.cmd("cc_hook", "run-sleep"), { input = fixture("hooks/Stop-hook-active.json"),
      on_stderr = function(s) sleeping = sleeping or s:find("sleeping") ~= nil end, timeout = 30 }))
    -- Wait until the function runs, then TERM it.
    assert.is_true(H.eventually(function() return sleeping end, 10))
    assert(p:kill("TERM"))
    local r = p:wait()
    assert.are_not.equal(0, r.code)
    assert.are_not.equal(1, r.code)
    assert.is_true(r.code == 128 + 15 or r.signal == "TERM", tostring(r.code) .. " " .. tostring(r.signal))
    assert.are.equal("", r.stdout)
  end)

  it("background work (detached) lets go of the hook's pipes", function()
    local pidfile = os.tmpname()
    finally(function()
      local pid = tonumber(H.read_file(pidfile):match("%d+") or "")
      if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
      os.remove(pidfile)
    end)
    -- The hook's stdout and stderr are pipes read to EOF by `cat`, as Claude
    -- Code reads them: `cat` ends only once no process holds them.
    local script = ('"$0" %q detach %q < %q 2>&1 | cat'):format(
      H.fixture("cc_hook"), pidfile, FIX .. "hooks/SessionEnd-prompt-input-exit.json")
    local r = assert(pm.run({ "sh", "-c", script, H.lua }, { timeout = 20 }))
    assert.are.equal(0, r.code, r.stdout)
    assert.is_true(r.duration < 10, "the pipe stayed open")
    local pid = assert(tonumber(H.read_file(pidfile):match("%d+")))
    assert.is_true(H.exists(pid), "the detached child is gone")
    assert.matches('"systemMessage":"started ' .. pid .. '"', r.stdout)
    -- Its own session, stdio on /dev/null, no copy of the hook's pipes (the
    -- sleeper's own procmon loop opens descriptors of its own).
    local hook_pipes = {}
    for l in H.read_file(pidfile):gmatch("pipe:%[%d+%]") do hook_pipes[l] = true end
    assert.is_not_nil(next(hook_pipes))
    local stat = H.read_file("/proc/" .. pid .. "/stat")
    local sid = tonumber(stat:match("%) %a %d+ %d+ (%d+)"))
    assert.are.equal(pid, sid)
    local fds = io.popen("ls /proc/" .. pid .. "/fd")
    for fd in fds:lines() do
      local link = io.popen("readlink /proc/" .. pid .. "/fd/" .. fd)
      local target = link:read("l")
      link:close()
      if tonumber(fd) <= 2 then assert.are.equal("/dev/null", target, "fd " .. fd) end
      assert.is_nil(hook_pipes[target], "fd " .. fd .. " holds the hook's " .. target)
    end
    fds:close()
  end)
end)
