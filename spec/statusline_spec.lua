-- procmon.statusline: formatting helpers (colours, durations, bars, UTF-8
-- aware widths and truncation) and run(), which always prints a line and
-- exits 0 but never swallows a stop signal.
local pm = require "procmon"
local H = require "helpers"
local sl = require "procmon.statusline"

local FIX = H.root .. "/spec/fixtures/claude-code/"

local function fixture(name) return H.read_file(FIX .. name) end

describe("procmon.statusline helpers", function()
  local saved
  before_each(function() saved = sl.color end)
  after_each(function() sl.color = saved end)

  it("is the same module as pm.statusline", function()
    assert.are.equal(sl, pm.statusline)
  end)

  it("paints with ANSI colours, or not when asked", function()
    sl.color = true
    assert.are.equal("\27[36mOpus\27[0m", sl.paint("cyan", "Opus"))
    assert.are.equal("\27[1;31mx\27[0m", sl.paint("bold red", "x"))
    sl.set_color(false)
    assert.are.equal("Opus", sl.paint("cyan", "Opus"))
    assert.has_error(function() sl.paint("mauve", "x") end, "bad argument #1 to 'paint' (unknown style 'mauve')")
  end)

  it("formats durations, percentages and token counts", function()
    assert.are.equal("0s", sl.duration(0.4))
    assert.are.equal("59s", sl.duration(59))
    assert.are.equal("3m 20s", sl.duration(200))
    assert.are.equal("1h 05m", sl.duration(3900))
    assert.are.equal("2d 4h", sl.duration(2 * 86400 + 4 * 3600 + 59))
    assert.are.equal("--", sl.duration(nil))
    assert.are.equal("--", sl.duration(-1))
    assert.are.equal("10%", sl.percent(9.64))
    assert.are.equal("15.69%", sl.percent(15.6905, 2))
    assert.are.equal("--%", sl.percent(nil))
    assert.are.equal("950", sl.tokens(950))
    assert.are.equal("18k", sl.tokens(18250))
    assert.are.equal("1.2M", sl.tokens(1200000))
    assert.are.equal("2M", sl.tokens(2000000))
  end)

  it("draws a context bar, coloured by level", function()
    sl.color = false
    assert.are.equal("██░░░░░░░░", sl.bar(22))
    assert.are.equal("░░░░░░░░░░", sl.bar(nil))
    assert.are.equal("█████", sl.bar(100, 5))
    assert.are.equal("##--", sl.bar(50, 4, { fill = "#", empty = "-" }))
    assert.are.equal("░░░░", sl.bar(-3, 4))
    sl.color = true
    assert.are.equal("\27[32m██\27[0m\27[90m░░░░░░░░\27[0m", sl.bar(22))
    assert.matches("^\27%[31m█████████\27%[0m", sl.bar(90))
    assert.are.equal("yellow", sl.level(75))
  end)

  it("measures display width: escapes 0, wide characters 2, combining marks 0", function()
    assert.are.equal(5, sl.width("hello"))
    assert.are.equal(6, sl.width("日本語"))
    assert.are.equal(4, sl.width("한국"))
    assert.are.equal(2, sl.width("🚀"))
    assert.are.equal(4, sl.width("ＡＢ"))  -- fullwidth forms
    assert.are.equal(1, sl.width("e\u{301}"))
    assert.are.equal(3, sl.width("\27[1;36mabc\27[0m"))
    assert.are.equal(3, sl.width("a\u{200B}bc"))
    assert.are.equal(2, sl.width("\xFFa"))  -- a stray byte shows as one replacement cell
  end)

  it("truncates to a display width without cutting a character", function()
    assert.are.equal("hello", sl.truncate("hello", 5))
    assert.are.equal("hell…", sl.truncate("hello world", 5))
    assert.are.equal("日本…", sl.truncate("日本語テキスト", 5))
    assert.are.equal("日…", sl.truncate("日本語テキスト", 4))  -- a wide char does not fit in 1 cell
    assert.are.equal("é…", sl.truncate("ééé", 2))
    assert.are.equal("🚀…", sl.truncate("🚀🚀🚀", 4))
    assert.are.equal("abc", sl.truncate("abcdef", 3, ""))
    assert.are.equal("", sl.truncate("abc", 0))
    for w = 0, 14 do
      local t = sl.truncate("Opus 4.6 · 日本語 🚀 ok", w)
      assert.is_truthy(utf8.len(t), "cut inside a character at width " .. w)
      assert.is_true(sl.width(t) <= w, "too wide at " .. w)
    end
    -- Escapes are kept whole and a cut coloured line ends with a reset.
    local t = sl.truncate("\27[36mOpus 4.6 (1M context)\27[0m", 8)
    assert.are.equal("\27[36mOpus 4.…\27[0m", t)
    assert.are.equal(8, sl.width(t))
    assert.has_error(function() sl.truncate("x", -1) end,
      "bad argument #2 to 'truncate' (non-negative integer expected)")
  end)

  it("cleans payload text for the terminal", function()
    local bad = fixture("bad/invalid-utf8.json")
    local data = assert(pm.session.read{ input = bad })
    for _, s in ipairs({ data.cwd, data.model.display_name, table.unpack(data.workspace.added_dirs) }) do
      local c = sl.clean(s)
      assert.is_truthy(utf8.len(c), c)
    end
    assert.are.equal("/home/dev/caf\u{FFFD}(", sl.clean(data.cwd))
    assert.are.equal("ab", sl.clean("a\27[2J\27]0;title\7b"))
    assert.are.equal("tab and newline gone", sl.clean("tab\t and\n newline gone"):gsub("  ", " "))
    assert.are.equal("x", sl.clean("\194\155x"))  -- C1 CSI
    assert.are.equal("日本 ok", sl.clean("日本 ok"))
  end)
end)

describe("statusline.run", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function()
    os.execute("rm -rf '" .. dir .. "'")
    H.assert_no_live_handles()
  end)

  local function run(mode, stdin, env)
    return assert(pm.run(H.cmd("cc_statusline", mode, dir), { input = stdin, env = env, timeout = 30 }))
  end

  it("prints the line for every statusline fixture and exits 0", function()
    local want = {
      ["full-v2.1.240.json"] = "Opus 4.6 (1M context) 10% 1000000",
      ["first-render-v2.1.226.json"] = "Haiku 4.5 --% 200000",
      ["later-render-v2.1.226.json"] = "Haiku 4.5 22% 200000",
      ["legacy-v2.0.76.json"] = "Sonnet 4.5 16% 200000",
      ["oldest-v1.0.80-docs.json"] = "Opus --% nil",
      ["worktree-vim-insert.json"] = "Sonnet 4.6 75% 200000",
      ["minimal.json"] = "Opus 25% nil",
    }
    for name, line in pairs(want) do
      local r = run("ok", fixture("statusline/" .. name))
      assert.are.equal(0, r.code, name)
      assert.are.equal(line .. "\n", r.stdout, name)
      assert.are.equal("", r.stderr, name)
    end
  end)

  it("on bad input logs one line and prints the last good line, or a fallback", function()
    for _, name in ipairs({ "bad/empty.txt", "bad/array.json", "bad/not-json.txt", "bad/null.json",
      "bad/empty-object.json", "bad/session-id-number.json" }) do
      local r = run("ok", fixture(name))
      assert.are.equal(0, r.code, name)
      assert.are.equal("[statusline unavailable]\n", r.stdout, name)
      assert.matches("^statusline: stdin: [^\n]+\n$", r.stderr, 1, false)
    end
    -- A good render of the session, then its payload cut short: the last
    -- good line comes back from the cache.
    assert.are.equal("Opus 4.6 (1M context) 10% 1000000\n", run("ok", fixture("statusline/full-v2.1.240.json")).stdout)
    local r = run("ok", fixture("bad/truncated.json"))
    assert.are.equal(0, r.code)
    assert.are.equal("Opus 4.6 (1M context) 10% 1000000\n", r.stdout)
    assert.are.equal("statusline: stdin: truncated JSON (910 bytes, then EOF)\n", r.stderr)
  end)

  it("on an error in the function prints the session's last good line", function()
    local payload = fixture("statusline/later-render-v2.1.226.json")
    local e = run("error", payload)
    assert.are.equal(0, e.code)
    assert.are.equal("[statusline unavailable]\n", e.stdout)
    assert.matches("^statusline: [^\n]*broken statusline\n$", e.stderr)
    assert.are.equal("Haiku 4.5 22% 200000\n", run("ok", payload).stdout)
    for _, mode in ipairs({ "error", "bad" }) do
      local r = run(mode, payload)
      assert.are.equal(0, r.code)
      assert.are.equal("Haiku 4.5 22% 200000\n", r.stdout)
      assert.is_true(select(2, r.stderr:gsub("\n", "")) == 1, r.stderr)
    end
    -- Another session does not get this one's line.
    assert.are.equal("[statusline unavailable]\n", run("error", fixture("statusline/minimal.json")).stdout)
  end)

  it("wrong field types give defaults, not a failure", function()
    local r = run("ok", fixture("bad/wrong-types.json"))
    assert.are.equal(0, r.code)
    assert.are.equal("x --% nil\n", r.stdout)
  end)

  it("does not wait for EOF", function()
    local p = assert(pm.spawn(H.cmd("cc_statusline", "ok", dir), { stdin = "pipe", timeout = 30 }))
    assert(p:write(fixture("statusline/minimal.json")))
    local r = p:wait()
    assert.are.equal(0, r.code)
    assert.are.equal("Opus 25% nil\n", r.stdout)
    assert.is_true(r.duration < 10)
    -- Nothing at all: the deadline, then the fallback.
    local q = assert(pm.spawn(H.cmd("cc_statusline", "ok", dir), { stdin = "pipe", timeout = 30 }))
    local rq = q:wait()
    assert.are.equal(0, rq.code)
    assert.are.equal("[statusline unavailable]\n", rq.stdout)
    assert.are.equal("statusline: stdin: no input within 1s (stdin still open)\n", rq.stderr)
  end)

  it("colours unless NO_COLOR is set", function()
    local payload = fixture("statusline/minimal.json")
    assert.are.equal("\27[36mOpus\27[0m\n", run("color", payload, { NO_COLOR = false }).stdout)
    assert.are.equal("Opus\n", run("color", payload, { NO_COLOR = "1" }).stdout)
  end)

  it("does not swallow a stop signal", function()
    local sleeping = false
    local p = assert(pm.spawn(H.cmd("cc_statusline", "sleep", dir), { input = fixture("statusline/minimal.json"),
      on_stderr = function(s) sleeping = sleeping or s:find("sleeping") ~= nil end, timeout = 30 }))
    assert.is_true(H.eventually(function() return sleeping end, 10))
    assert(p:kill("TERM"))
    local r = p:wait()
    assert.is_true(r.code == 128 + 15 or r.signal == "TERM", tostring(r.code) .. " " .. tostring(r.signal))
    assert.are.equal("", r.stdout)
  end)
end)
