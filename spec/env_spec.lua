-- procmon.env: PROCESS_* metadata from a parent to a real child and back.
local pm = require "procmon"
local H = require "helpers"
local json = require "procmon.json"

local function child_meta(env, opts)
  opts = opts or {}
  opts.env = env
  local r = assert(pm.run(H.cmd("cc_env"), opts))
  assert.are.equal(0, r.code, r.stderr)
  local line = r.stdout:match("^(.-)\n$")
  if line:sub(1, 1) == "{" then return assert(json.decode(line)) end
  return line
end

describe("pm.env", function()
  after_each(H.assert_no_live_handles)

  it("round-trips through a real child", function()
    local env = pm.env.encode{ session_id = "3f2a9c1e-7b4d", task_id = "build-41",
      config = { retries = 3, window = 200000, ratio = 0.5, tags = { "a", "b" }, on = true } }
    local meta = child_meta(env)
    assert.are.equal("3f2a9c1e-7b4d", meta.session_id)
    assert.are.equal("build-41", meta.task_id)
    assert.are.equal(math.tointeger(require("procmon.input").pid()), meta.parent_pid)
    assert.are.equal(3, meta.config.retries)
    assert.are.equal("integer", math.type(meta.config.window))
    assert.are.equal(200000, meta.config.window)
    assert.are.equal(0.5, meta.config.ratio)
    assert.are.same({ "a", "b" }, meta.config.tags)
    assert.is_true(meta.config.on)
  end)

  it("uses the Bun plugins' variable names, with the config as JSON", function()
    local env = pm.env.encode{ parent_pid = 4242, session_id = "s1", task_id = 7,
      config = { window = 200000 } }
    assert.are.same({
      PROCESS_PARENT_PID = "4242", PROCESS_SESSION_ID = "s1", PROCESS_TASK_ID = "7",
      PROCESS_CONFIG = '{"window":200000}',
    }, env)
    -- As a Bun parent would set them, read back by a procrun child.
    local meta = child_meta({ PROCESS_PARENT_PID = "99", PROCESS_SESSION_ID = "bun-s",
      PROCESS_TASK_ID = "t-1", PROCESS_CONFIG = '{"model":"opus","limits":{"max":2}}' })
    assert.are.same({ parent_pid = 99, session_id = "bun-s", task_id = "t-1",
      config = { model = "opus", limits = { max = 2 } } }, meta)
  end)

  it("decodes to nil when no variable is set, also in a child", function()
    assert.is_nil(pm.env.decode({}))
    assert.is_nil(pm.env.decode({ PROCESS_SESSION_ID = "", OTHER = "x" }))
    local clean = { PROCESS_PARENT_PID = false, PROCESS_SESSION_ID = false,
      PROCESS_TASK_ID = false, PROCESS_CONFIG = false }
    assert.are.equal("nil", child_meta(clean))
  end)

  it("absent fields remove inherited metadata from the child", function()
    local env = pm.env.encode{ session_id = "new" }
    assert.is_false(env.PROCESS_TASK_ID)
    assert.is_false(env.PROCESS_CONFIG)
    -- The child of a child: the grandparent's task id must not leak through.
    local r = assert(pm.run(H.cmd("cc_env_parent"),
      { env = { PROCESS_TASK_ID = "old-task", PROCESS_CONFIG = '{"old":1}' } }))
    assert.are.equal(0, r.code, r.stderr)
    local meta = assert(json.decode(r.stdout))
    assert.are.equal("new", meta.session_id)
    assert.is_nil(meta.task_id)
    assert.is_nil(meta.config)
  end)

  it("returns nil, err on malformed values", function()
    local cases = {
      { { PROCESS_PARENT_PID = "abc" }, "PROCESS_PARENT_PID is not a pid" },
      { { PROCESS_PARENT_PID = "-5" }, "PROCESS_PARENT_PID is not a pid" },
      { { PROCESS_PARENT_PID = "0" }, "PROCESS_PARENT_PID is not a pid" },
      { { PROCESS_PARENT_PID = "12.5" }, "PROCESS_PARENT_PID is not a pid" },
      { { PROCESS_CONFIG = "{bad json" }, "PROCESS_CONFIG is not valid JSON" },
      { { PROCESS_CONFIG = "[1,2]" }, "PROCESS_CONFIG is not a JSON object" },
      { { PROCESS_CONFIG = '"str"' }, "PROCESS_CONFIG is not a JSON object" },
    }
    for _, c in ipairs(cases) do
      local meta, err = pm.env.decode(c[1])
      assert.is_nil(meta)
      assert.matches(c[2], err, 1, true)
    end
    assert.matches("^error: PROCESS_PARENT_PID is not a pid", child_meta({ PROCESS_PARENT_PID = "x1" }))
  end)

  it("refuses a config over 8 KiB encoded, clearly", function()
    local big = { text = ("x"):rep(8200) }
    local ok, err = pcall(pm.env.encode, { config = big })
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'encode' (config: 8211 bytes encoded, over the 8192-byte limit of PROCESS_CONFIG)", err, 1, true)
    -- Just under the limit is fine.
    local fits = { text = ("x"):rep(8192 - 11) }
    assert.are.equal(8192, #pm.env.encode({ config = fits }).PROCESS_CONFIG)
  end)

  it("raises on misuse at the caller's line", function()
    local cases = {
      { "x", "table expected, got string" },
      { { nope = 1 }, "unknown field 'nope'" },
      { { parent_pid = -1 }, "parent_pid: positive integer expected" },
      { { parent_pid = 1.5 }, "parent_pid: positive integer expected" },
      { { session_id = {} }, "session_id: string expected, got table" },
      { { session_id = "" }, "session_id: must be non-empty" },
      { { config = "x" }, "config: table expected, got string" },
      { { config = { 1, 2 } }, "config: a JSON object expected" },
      { { config = { f = print } }, "config: " },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(pm.env.encode, c[1])
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'encode' (" .. c[2], err, 1, true)
    end
    local ok, err = pcall(function() pm.env.encode("x") end)
    assert.is_false(ok)
    assert.matches("env_spec.lua:%d+: bad argument", err)
    assert.has_error(function() pm.env.decode("x") end,
      "bad argument #1 to 'decode' (table expected, got string)")
  end)
end)
