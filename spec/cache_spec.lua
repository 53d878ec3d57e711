-- procmon.cache: values and keys round-trip, TTLs, atomic writes under
-- kill -9, cross-process update, corrupt files, hostile directories.
local pm = require "procmon"
local H = require "helpers"
local cache = require "procmon.cache"
local store = require "procmon.store"
local cjson = require "cjson.safe"

local q, sh = H.q, H.sh

local function sleep(s) assert(os.execute("sleep " .. s)) end

-- The files in dir (names, sorted), dot files included, except ".lock": the
-- directory lock, created by the first write and kept.
local function ls(dir)
  local out = sh("ls -A " .. q(dir))
  local names = {}
  for name in out:gmatch("[^\n]+") do
    if name ~= ".lock" then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function mode(path) return (sh("stat -c %a " .. q(path)):gsub("%s+$", "")) end

-- Runs a Lua chunk in a child interpreter with procmon loadable; env is a
-- shell prefix ("VAR=x umask 0; ..." style).
local function child(code, prefix)
  local pre = ("package.cpath = %q .. '/?.so;' .. package.cpath; "
    .. "require 'procmon'; "):format(H.build)
  return sh(("%s %s -e %s"):format(prefix or "", q(H.lua), q(pre .. code)))
end

describe("cache", function()
  local dir, c

  before_each(function()
    dir = H.tmpdir()
    c = assert(cache.open(dir))
  end)

  after_each(function()
    c:close()
    os.execute("rm -rf " .. q(dir))
    H.assert_no_live_handles()
  end)

  it("can be required before procmon itself", function()
    local out, code = sh(("%s -e %s"):format(q(H.lua),
      q("local c = require('procmon.cache'); local x = assert(c.open(" .. ("%q"):format(dir) .. "));"
        .. " x:set('k', 7); io.write(x:get('k'))")))
    assert.are.equal(0, code)
    assert.are.equal("7", out)
  end)

  describe("values", function()
    it("round-trip with their types", function()
      local values = {
        1, -7, 0, math.maxinteger, math.mininteger, 2 ^ 53 + 0.0, 0.1 + 0.2,
        1e300, -2.5e-300, 3.0, "", "plain", "quote\" back\\ nl\n tab\t nul\0 \1",
        "\xff\xfe binary \x80", "ümlaut ✓ 😀", true, false,
        { 1, 2, 3 }, { a = 1, b = { c = { "d", { e = true } } } },
        { list = { 1.5, "x", false }, n = 12345678901234567 },
      }
      for i, v in ipairs(values) do
        assert(c:set("v" .. i, v))
        local back = c:get("v" .. i)
        assert.are.same(v, back)
        if type(v) == "number" then
          assert.are.equal(math.type(v), math.type(back))
          assert.is_true(v == back)
        end
      end
    end)

    it("keep null as cache.null (cjson.null)", function()
      assert(c:set("n", { 1, cache.null, 3 }))
      local back = c:get("n")
      assert.are.equal(3, #back)
      assert.are.equal(cache.null, back[2])
      assert.are.equal(cjson.null, cache.null)
    end)

    it("write sequences as arrays, other tables as objects, {} stays {}",
      function()
        assert(c:set("seq", { "a", "b" }))
        assert(c:set("obj", { x = 1 }))
        assert(c:set("empty", {}))
        assert(c:set("arr", setmetatable({}, cache.array_mt)))
        assert(c:set("holes", { [1] = "a", [3] = "c" }))
        local raw = function(k)
          return cjson.decode(H.read_file(dir .. "/" .. k .. ".json"))
        end
        assert.matches('"value":%["a","b"%]', H.read_file(dir .. "/seq.json"))
        assert.matches('"value":{}', H.read_file(dir .. "/empty.json"))
        assert.matches('"value":%[%]', H.read_file(dir .. "/arr.json"))
        assert.are.same({ ["1"] = "a", ["3"] = "c" }, raw("holes").value)
        assert.are.same({ ["1"] = "a", ["3"] = "c" }, c:get("holes"))
        -- An empty array read back keeps array_mt, so it is written as [].
        local arr = c:get("arr")
        assert.are.equal(cache.array_mt, getmetatable(arr))
        assert.is_nil(getmetatable(c:get("empty")))
        assert(c:set("arr2", arr))
        assert.matches('"value":%[%]', H.read_file(dir .. "/arr2.json"))
      end)

    it("that cannot be encoded raise and write nothing", function()
      assert(c:set("keep", "old"))
      local cyclic = {}
      cyclic.self = { cyclic }
      local cases = {
        { print, "cannot encode a function value" },
        { { a = { b = { 1, 2, print } } }, "cannot encode a function value %(at value.a.b%[3%]%)" },
        { cyclic, "cannot encode a table that contains itself" },
        { 0 / 0, "cannot encode NaN or infinity" },
        { { x = math.huge }, "cannot encode NaN or infinity %(at value.x%)" },
        { coroutine.create(print), "cannot encode a thread value" },
        { io.stdout, "cannot encode a userdata value" },
        { { [true] = 1 }, "cannot encode a table key of type boolean" },
      }
      for _, case in ipairs(cases) do
        assert.error_matches(function() c:set("keep", case[1]) end,
          "bad argument #2 to 'set' %(" .. case[2])
      end
      assert.are.equal("old", c:get("keep"))
      assert.are.same({ "keep.json" }, ls(dir))
      assert.error_matches(function()
        c:update("keep", function() return { f = print } end)
      end, "bad result of the function to 'update' %(cannot encode a function value")
      assert.are.equal("old", c:get("keep"))
      assert.are.same({ "keep.json" }, ls(dir))
    end)

    it("nested 128 deep are kept (what set takes, get returns); 129 raise",
      function()
        local v = {}
        for _ = 2, 128 do v = { v } end
        assert(c:set("deep", v))
        assert.are.same(v, c:get("deep"))
        assert.are.equal(0, c:purge())
        assert.are.same({ "deep" }, c:keys())
        assert.error_matches(function() c:set("deep", { v }) end,
          "bad argument #2 to 'set' %(cannot encode a value nested more than 128 deep")
        assert.are.same(v, c:get("deep"))
      end)

    it("nil deletes", function()
      assert(c:set("k", 1))
      assert.is_true(c:set("k", nil))
      assert.is_nil(c:get("k"))
      assert.are.same({}, ls(dir))
    end)
  end)

  describe("keys", function()
    local keys = {
      "/", "a/b", "..", "../../etc/passwd", ".", ".hidden", "with space",
      "tab\there", "ümlaut ✓", "%41", "A", "a.json", "~tilde", "",
      "nul\0inside", ("k"):rep(10 * 1024), ("/.."):rep(100),
    }
    local bytes = {}
    for b = 1, 255 do bytes[#bytes + 1] = string.char(b) end
    keys[#keys + 1] = table.concat(bytes)
    keys[#keys + 1] = table.concat(bytes):reverse()

    it("map to one file each inside the directory and list back", function()
      for i, k in ipairs(keys) do assert(c:set(k, i)) end
      for i, k in ipairs(keys) do assert.are.equal(i, c:get(k)) end
      local want = {}
      for _, k in ipairs(keys) do want[#want + 1] = k end
      table.sort(want)
      assert.are.same(want, c:keys())
      local names = ls(dir)
      assert.are.equal(#keys, #names)
      for _, name in ipairs(names) do
        assert.is_true(#name <= 255 and not name:find("/", 1, true))
        assert.are_not.equal(".", name:sub(1, 1))
        assert.matches("%.json$", name)
        assert.are.equal("file", (sh("stat -c %F " .. q(dir .. "/" .. name))
          :gsub("regular ", ""):gsub("%s+$", "")))
      end
      -- Nothing landed next to the directory.
      local parent = dir:match("^(.*)/[^/]*$")
      -- (Other tests' files come and go in the parent: find's complaints
      -- about them are not ours.)
      assert.are.equal("", (sh("(find " .. q(parent) .. " -maxdepth 1 -newer "
        .. q(dir) .. " -name '*.json' 2>/dev/null)")))
      for _, k in ipairs(keys) do assert.is_true(c:delete(k)) end
      assert.are.same({}, ls(dir))
    end)

    it("are named readably, long ones by SHA-256", function()
      assert.are.equal("git:branch.json", c._store:name("git:branch"))
      assert.are.equal("a%2Fb.json", c._store:name("a/b"))
      assert.are.equal("%2E..json", c._store:name(".."))
      assert.are.equal("%.json", c._store:name(""))
      local long = ("k"):rep(10 * 1024)
      local sum = sh("printf %s " .. q(long) .. " | sha256sum"):match("^%x+")
      assert.are.equal("~" .. sum .. ".json", c._store:name(long))
    end)

    it("filter by prefix and come sorted", function()
      for _, k in ipairs { "b:2", "a:1", "b:1", "c", ("b:"):rep(200) } do
        assert(c:set(k, true))
      end
      assert.are.same({ "b:1", "b:2", ("b:"):rep(200) }, c:keys("b:"))
      assert.are.same({ "a:1", "b:1", "b:2", ("b:"):rep(200), "c" }, c:keys())
      assert.are.same({}, c:keys("zz"))
    end)
  end)

  describe("file format", function()
    it("is {key, expires_at, value} JSON that cjson reads", function()
      assert(c:set("fmt", { n = 1 }))
      local t = cjson.decode(H.read_file(dir .. "/fmt.json"))
      assert.are.same({ key = "fmt", expires_at = cjson.null, value = { n = 1 } }, t)
      local before = store.now()
      assert(c:set("fmt", "v", 60))
      t = cjson.decode(H.read_file(dir .. "/fmt.json"))
      assert.is_true(t.expires_at >= before + 59 and t.expires_at <= store.now() + 61)
      assert.matches('^{"key":"fmt","expires_at":[%d.]+,"value":"v"}\n$',
        H.read_file(dir .. "/fmt.json"))
    end)

    it("is written by others too (field order, spacing, no expires_at)",
      function()
        write_file(dir .. "/ext.json",
          ' { "value" : [1, {"a": null}], "key": "ext" }\n')
        assert.are.same({ 1, { a = cache.null } }, c:get("ext"))
        write_file(dir .. "/ext2.json",
          '{"expires_at": 4102444800, "key": "ext2", "value": "later"}')
        assert.are.equal("later", c:get("ext2"))
      end)

    it("has 0600 files and a 0700 directory whatever the umask", function()
      local d2 = dir .. "/sub"
      local out = child(("local c = assert(require('procmon.cache').open(%q)); "
        .. "assert(c:set('k', 1))"):format(d2), "umask 000;")
      assert.are.equal("", out)
      assert.are.equal("700", mode(d2))
      assert.are.equal("600", mode(d2 .. "/k.json"))
      child(("assert(require('procmon.cache').open(%q))"):format(d2 .. "/x"),
        "umask 777;")
      assert.are.equal("700", mode(d2 .. "/x"))
    end)
  end)

  describe("expiry", function()
    it("hides expired entries and removes them lazily", function()
      assert(c:set("short", "v", 0.3))
      assert(c:set("long", "v", 60))
      assert(c:set("never", "v"))
      assert.are.equal("v", c:get("short"))
      assert.is_true(c:has("short"))
      assert.are.same({ "long", "never", "short" }, c:keys())
      sleep(0.6)
      assert.is_false(c:has("short"))
      assert.are.same({ "long", "never" }, c:keys())
      assert.is_nil(c:get("short"))
      assert.are.same({ "long.json", "never.json" }, ls(dir))
    end)

    it("is kept by update without a ttl, replaced with one", function()
      assert(c:set("n", 1, 60))
      local function exp()
        return cjson.decode(H.read_file(dir .. "/n.json")).expires_at
      end
      local e1 = exp()
      assert.are.equal(2, c:update("n", function(o) return o + 1 end))
      assert.are.equal(e1, exp())
      c:update("n", function(o) return o + 1 end, 3600)
      assert.is_true(exp() > e1 + 3000)
      assert(c:set("n", 5))
      assert.are.equal(cjson.null, exp())
    end)

    it("is removed without hiding a fresh entry written meanwhile", function()
      -- The reader finds the entry expired and removes it; a shim stalls
      -- it for 1 s at the steps where a writer can meet it (moving the
      -- entry aside, linking one back), so the race happens every time.
      local so, mark = dir .. "-stall.so", dir .. "-mark"
      local out, code = sh(("cc -shared -fPIC -o %s %s -ldl"):format(q(so),
        q(H.root .. "/spec/fixtures/stall_remove.c")))
      assert.are.equal(0, code, out)
      finally(function() os.remove(so); os.remove(mark) end)
      write_file(dir .. "/k.json", '{"key":"k","expires_at":1,"value":"old"}\n')
      local reader = assert(pm.spawn({ H.lua, "-e", ("require('procmon'); "
        .. "assert(require('procmon.cache').open(%q)):get('k')"):format(dir) }, {
        env = { LD_PRELOAD = so, PM_STALL_MARK = mark, PM_STALL_SECONDS = "1",
          ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":verify_asan_link_order=0" },
      }))
      assert(H.eventually(function()
        local f = io.open(mark)
        if f then f:close() end
        return f ~= nil
      end, 10), "the reader never started to remove the entry")
      assert(c:set("k", "fresh"))
      local deadline = pm.time() + 1.5
      repeat
        assert.are.equal("fresh", c:get("k"))
        pm.sleep(0.01)
      until pm.time() > deadline
      local r = reader:wait()
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("fresh", c:get("k"))
      assert.are.same({ "k.json" }, ls(dir))
    end)

    it("is purged", function()
      assert(c:set("a", 1, 0.2))
      assert(c:set("b", 1, 0.2))
      assert(c:set("c", 1))
      sleep(0.4)
      assert.are.equal(2, c:purge())
      assert.are.same({ "c.json" }, ls(dir))
      assert.are.equal(0, c:purge())
    end)
  end)

  describe("bad files", function()
    local bad = {
      ["truncated.json"] = '{"key":"truncated","expires_at":null,"val',
      ["empty.json"] = "",
      ["notjson.json"] = "hello world\n",
      ["array.json"] = "[1,2,3]",
      ["novalue.json"] = '{"key":"novalue","expires_at":null}',
      ["wrongkey.json"] = '{"key":"other","expires_at":null,"value":1}',
      ["badexp.json"] = '{"key":"badexp","expires_at":"soon","value":1}',
      ["nokey.json"] = '{"value":1}',
      ["binary.json"] = "\0\1\2\255",
      ["trailing.json"] = '{"key":"trailing","value":1} x',
      [("x"):rep(240) .. ".json"] = "a foreign name too long to be ours",
    }

    it("read as misses, are not listed, and purge removes them", function()
      for name, data in pairs(bad) do write_file(dir .. "/" .. name, data) end
      write_file(dir .. "/README", "not an entry")
      assert(os.execute("mkdir " .. q(dir .. "/adir.json")))
      assert(os.execute("mkfifo " .. q(dir .. "/fifo.json")))
      assert(c:set("good", 1))
      for name in pairs(bad) do
        local key = name:gsub("%.json$", "")
        local v, msg = c:get(key)
        assert.is_nil(v)
        assert.is_nil(msg)
        assert.is_false(c:has(key))
      end
      assert.is_nil(c:get("fifo"))  -- and does not hang
      assert.is_nil(c:get("adir"))
      assert.are.same({ "good" }, c:keys())
      local n = 0
      for _ in pairs(bad) do n = n + 1 end
      assert.are.equal(n + 1, c:purge())  -- the fifo too
      assert.are.same({ "README", "adir.json", "good.json" }, ls(dir))
      assert.are.equal(1, c:get("good"))
    end)

    it("over 64 MiB are misses, never read whole, and purged", function()
      -- A sparse terabyte and a gigabyte of zeros would exhaust memory.
      assert(os.execute("truncate -s 1T " .. q(dir .. "/tera.json")))
      assert(os.execute("truncate -s 1G " .. q(dir .. "/giga.json")))
      -- A valid record padded with spaces to the bound, and one byte more.
      local function padded(key, size)
        local rec = ('{"key":"%s","value":"ok"}'):format(key)
        write_file(dir .. "/" .. key .. ".json", rec .. (" "):rep(size - #rec))
      end
      padded("at", 64 * 2 ^ 20)
      padded("over", 64 * 2 ^ 20 + 1)
      for _, key in ipairs { "tera", "giga", "over" } do
        local v, msg = c:get(key)
        assert.is_nil(v)
        assert.is_nil(msg)
        assert.is_false(c:has(key))
      end
      assert.are.equal("ok", c:get("at"))
      assert.are.same({ "at" }, c:keys())
      assert.are.equal(3, c:purge())
      assert.are.same({ "at.json" }, ls(dir))
    end)

    it("over 64 MiB are refused by set with EFBIG, writing nothing", function()
      assert(c:set("k", "old"))
      local ok, msg, code = c:set("k", ("x"):rep(64 * 2 ^ 20))
      assert.is_nil(ok)
      assert.are.equal("EFBIG", code)
      assert.matches("cache set 'k.json' %(67108%d%d%d bytes, limit 64 MiB%): EFBIG", msg)
      assert.are.equal("old", c:get("k"))
      assert.are.same({ "k.json" }, ls(dir))
    end)

    it("over 64 MiB are cleaned by procrun gc", function()
      local state = dir .. "/state"
      assert(os.execute(("mkdir -m 700 %s %s/cache"):format(q(state), q(state))))
      assert(os.execute("truncate -s 1T " .. q(state .. "/cache/tera.json")))
      local out, code = sh(("PROCMON_STATE_DIR=%s %s gc"):format(q(state), q(H.procrun)))
      assert.are.equal(0, code, out)
      assert.matches("removed 1 file from", out)
      assert.are.same({}, ls(state .. "/cache"))
    end)

    it("are overwritten by set", function()
      write_file(dir .. "/k.json", "garbage")
      assert(c:set("k", "fresh"))
      assert.are.equal("fresh", c:get("k"))
    end)
  end)

  describe("symlinks", function()
    it("as entries are never followed", function()
      local target = dir .. "-target"
      write_file(target, '{"key":"s","expires_at":null,"value":"secret"}')
      assert(os.execute(("ln -s %s %s"):format(q(target), q(dir .. "/s.json"))))
      assert.is_nil(c:get("s"))
      assert.are.same({}, c:keys())
      assert(c:set("s", "mine"))
      assert.are.equal("mine", c:get("s"))
      assert.matches('"secret"', H.read_file(target))
      assert(os.execute(("ln -s %s %s"):format(q(target), q(dir .. "/t.json"))))
      assert.are.equal(1, c:purge())
      assert.are.same({ "s.json" }, ls(dir))
      assert.matches('"secret"', H.read_file(target))
      os.remove(target)
    end)

    it("as temp or lock files are not followed either", function()
      local target = dir .. "-target"
      write_file(target, "precious")
      assert(os.execute(("ln -s %s %s"):format(q(target), q(dir .. "/.lock-k.json"))))
      assert.is_nil(c:update("k", function() return 1 end))
      assert.are.equal("precious", H.read_file(target))
      c:purge()
      assert.are.same({}, ls(dir))
      assert.are.equal(1, c:update("k", function() return 1 end))
      assert.are.equal("precious", H.read_file(target))
      os.remove(target)
    end)
  end)

  describe("update", function()
    it("applies fn to the old value; nil deletes", function()
      assert.are.equal(1, c:update("n", function(o) assert.is_nil(o) return 1 end))
      assert.are.equal(2, c:update("n", function(o) return o + 1 end))
      assert.is_nil(c:update("n", function() return nil end))
      assert.is_nil(c:get("n"))
      assert.are.same({}, ls(dir))
    end)

    it("keeps the old value when fn raises, and releases the lock", function()
      assert(c:set("n", 1))
      assert.error_matches(function()
        c:update("n", function() error("boom") end)
      end, "boom")
      assert.are.equal(1, c:get("n"))
      assert.are.same({ "n.json" }, ls(dir))
      assert.are.equal(2, c:update("n", function(o) return o + 1 end))
    end)

    it("of the same key inside update raises; other keys work", function()
      assert.error_matches(function()
        c:update("a", function()
          c:update("a", function() return 1 end)
        end)
      end, "already locked by this process")
      assert.are.equal(1, c:update("a", function()
        assert.are.equal(5, c:update("b", function() return 5 end))
        return 1
      end))
    end)

    it("from 8 processes x 500 increments loses none", function()
      local cmd = {}
      for _ = 1, 8 do
        cmd[#cmd + 1] = ("%s %s %s counter 500 &"):format(q(H.lua),
          q(H.fixture("cache_incr")), q(dir))
      end
      local out = sh(table.concat(cmd, " ") .. " wait")
      local _, done = out:gsub("done\n", "")
      assert.are.equal(8, done, out)
      assert.are.equal(4000, c:get("counter"))
      assert.are.equal("integer", math.type(c:get("counter")))
      assert.are.same({ "counter.json" }, ls(dir))
    end)
  end)

  describe("locks", function()
    -- Runs a chunk in a child interpreter, with a deadline: a deadlock
    -- must fail the test, not hang the suite.
    local function run_lua(code)
      local r = assert(pm.run({ H.lua, "-e", "require 'procmon'; " .. code },
        { timeout = 20 }))
      assert.are.equal("exit", r.reason, "the child hung: " .. r.stderr)
      return r.stdout, r
    end

    it("are per process: nested use through two objects raises at once",
      function()
        local out, r = run_lua(([[
          local pm, cache = require "procmon", require "procmon.cache"
          local c1, c2 = assert(cache.open(%q)), assert(cache.open(%q))
          print(pcall(c1.update, c1, "k", function()
            local v = c2:update("k", function() return 1 end)
            return v
          end))
          print(pcall(c1.update, c1, "r", function()
            local v = c2:remember("r", nil, function() return 1 end)
            return v
          end))
          local a = pm.task(function()
            return c1:update("n", function(o) pm.sleep(0.2) return (o or 0) + 1 end)
          end)
          local b = pm.task(function()
            return c2:update("n", function(o) return (o or 0) + 10 end)
          end)
          print(a:wait(), b:wait(), c1:get("n"))
        ]]):format(dir, dir))
        local lines = {}
        for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
        assert.are.equal(0, r.code, r.stderr)
        assert.matches('^false\t.*update: key "k" is already locked by this process '
          .. '%(nested update or remember of the same key%)$', lines[1])
        assert.matches('^false\t.*remember: key "r" is already locked by this process', lines[2])
        assert.are.equal("1\t11\t11", lines[3])
      end)

    it("make two tasks updating one key take turns; both updates land", function()
      local log = {}
      local a = pm.task(function()
        return c:update("n", function(o)
          log[#log + 1] = "a in"
          pm.sleep(0.2)
          log[#log + 1] = "a out"
          return (o or 0) + 1
        end)
      end)
      local b = pm.task(function()
        return c:update("n", function(o)
          log[#log + 1] = "b in"
          return (o or 0) + 10
        end)
      end)
      assert.are.equal(1, a:wait())
      assert.are.equal(11, b:wait())
      assert.are.same({ "a in", "a out", "b in" }, log)
      assert.are.equal(11, c:get("n"))
      assert.are.same({ "n.json" }, ls(dir))
    end)

    it("make two tasks remembering one key compute it once", function()
      local calls = 0
      local function compute()
        calls = calls + 1
        pm.sleep(0.1)
        return "v" .. calls
      end
      local a = pm.task(function() return c:remember("r", 60, compute) end)
      local b = pm.task(function() return c:remember("r", 60, compute) end)
      assert.are.equal("v1", a:wait())
      assert.are.equal("v1", b:wait())
      assert.are.equal(1, calls)
    end)

    it("make the main thread wait for a task that holds the key", function()
      local t = pm.task(function()
        return c:update("n", function() pm.sleep(0.1) return 1 end)
      end)
      assert.are.equal(2, c:update("n", function(o) return o + 1 end))
      assert.are.equal(1, t:wait())
    end)

    it("held by another process: a task waiting for one lets the loop run",
      function()
        local locked = false
        local holder = assert(pm.spawn(H.cmd("cache_hold", dir, "k", "1.5"), {
          lines = true, on_stdout = function(l) locked = locked or l == "locked" end }))
        assert(H.eventually(function() return locked end, 10))
        local ticks, ticks_then, done = 0, nil, false
        local ticker = pm.task(function()
          while not done do
            pm.sleep(0.01)
            ticks = ticks + 1
          end
        end)
        local t = pm.task(function()
          local v = c:update("k", function(old) return old .. "+mine" end)
          ticks_then, done = ticks, true
          return v
        end)
        assert.are.equal("theirs+mine", t:wait())
        ticker:wait()
        assert.is_true(ticks_then >= 10, "the loop stood still: " .. ticks_then .. " ticks")
        assert.is_true(holder:wait().ok)
      end)

    it("held by another process: procrun waiting for one ends on SIGTERM",
      function()
        local locked, waiting = false, false
        local holder = assert(pm.spawn(H.cmd("cache_hold", dir, "k", "60"), {
          lines = true, on_stdout = function(l) locked = locked or l == "locked" end }))
        local waiter
        finally(function()
          for _, p in ipairs { holder, waiter } do p:kill("KILL") p:wait() end
        end)
        assert(H.eventually(function() return locked end, 10))
        waiter = assert(pm.spawn({ H.procrun, "-e", ("local c = assert(require('procmon.cache')"
          .. ".open(%q)); io.stderr:write('waiting\\n'); c:update('k', function() return 1 end); "
          .. "print('updated')"):format(dir) }, {
          lines = true, on_stderr = function(l) waiting = waiting or l == "waiting" end }))
        assert(H.eventually(function() return waiting end, 10))
        pm.sleep(0.3)  -- inside the wait for the lock by now
        waiter:kill("TERM")
        local r, msg = waiter:wait(10)
        assert(r, "procrun did not end on SIGTERM: " .. tostring(msg))
        assert.is_false(r.ok)
        assert.is_nil(r.stdout:find("updated"))
      end)
  end)

  describe("remember", function()
    it("computes once, then reads", function()
      local calls = 0
      local function compute() calls = calls + 1 return { at = calls } end
      assert.are.same({ at = 1 }, c:remember("r", 60, compute))
      assert.are.same({ at = 1 }, c:remember("r", 60, compute))
      assert.are.equal(1, calls)
      assert.is_nil(c:remember("nil", 60, function() return nil end))
      assert.is_nil(c:get("nil"))
    end)

    it("recomputes after expiry", function()
      assert.are.equal(1, c:remember("r", 0.2, function() return 1 end))
      sleep(0.4)
      assert.are.equal(2, c:remember("r", 0.2, function() return 2 end))
    end)

    it("propagates an error of fn and releases the lock", function()
      assert.error_matches(function()
        c:remember("r", 1, function() error("no luck") end)
      end, "no luck")
      assert.are.equal(3, c:remember("r", 1, function() return 3 end))
      assert.are.same({ "r.json" }, ls(dir))
    end)
  end)

  describe("crash safety", function()
    it("kill -9 at any moment loses nothing committed", function()
      local log = dir .. "-log"
      local writer = ("%s %s %s %s"):format(q(H.lua), q(H.fixture("cache_writer")),
        q(dir), q(log))
      local kills = 0
      for round = 1, 6 do
        -- 50 writers per round, each killed after 5..55 ms.
        local script = {}
        for i = 1, 50 do
          local ms = 5 + (i * 37 + round * 11) % 51
          script[#script + 1] = ("%s >/dev/null 2>&1 & p=$!; sleep 0.%03d; "
            .. "kill -9 $p; wait $p 2>/dev/null;"):format(writer, ms)
        end
        sh(table.concat(script, " "))
        kills = kills + 50
        -- Every entry parses and holds a value that was written, at least
        -- as new as the last one the writer saw committed.
        local committed = {}
        for line in io.lines(log) do
          local k, s = line:match("^(k%d+) (%d+)$")
          if k then committed[k] = math.max(committed[k] or 0, tonumber(s)) end
        end
        for _, name in ipairs(ls(dir)) do
          if not name:match("^%.tmp%-") then
            local key = assert(name:match("^(k%d+)%.json$"), name)
            local raw = cjson.decode(H.read_file(dir .. "/" .. name))
            assert.is_table(raw, name)
            local v = c:get(key)
            assert.are.equal(key, v.key)
            assert.are.equal(v.len, #v.data)
            assert.are.equal(string.char(97 + v.seq % 26):rep(v.len), v.data)
          end
        end
        for k, s in pairs(committed) do
          assert.is_true(c:get(k).seq >= s, k .. " lost seq " .. s)
        end
      end
      assert.is_true(kills >= 300)
      c:purge()  -- the writers are dead: their temp files go
      for _, name in ipairs(ls(dir)) do assert.matches("^k%d+%.json$", name) end
      os.remove(log)
    end)

    it("readers never see a partial entry", function()
      local log = dir .. "-log"
      local p = assert(io.popen(("%s %s %s %s 4 1.5 & echo $!"):format(
        q(H.lua), q(H.fixture("cache_writer")), q(dir), q(log))))
      local pid = p:read("l")
      local seen, deadline = 0, store.now() + 1.2
      while store.now() < deadline do
        for i = 1, 4 do
          local v = c:get("k" .. i)
          if v then
            seen = seen + 1
            assert.are.equal(v.len, #v.data)
          end
        end
      end
      p:close()
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      assert.is_true(seen > 100)
      os.remove(log)
    end)

    it("purge keeps live temp files and drops stale ones", function()
      local dead = sh("sh -c 'echo $$'"):match("%d+")
      write_file(dir .. "/.tmp-" .. dead .. "-0", "partial")
      write_file(dir .. "/.tmp-1-0", "a live writer's")
      write_file(dir .. "/.tmp-junk", "x")
      write_file(dir .. "/.lock-k.json", "")
      -- An entry moved aside by a purge killed halfway comes back.
      write_file(dir .. "/.del-" .. dead .. "-back.json",
        '{"key":"back","expires_at":null,"value":"restored"}')
      assert.are.equal(2, c:purge())
      assert.are.same({ ".tmp-1-0", "back.json" }, ls(dir))
      assert.are.equal("restored", c:get("back"))
    end)

    it("durable mode works (fsync file and directory)", function()
      local d = assert(cache.open(dir, { durable = true }))
      assert.is_true(d.durable)
      assert(d:set("k", { 1, 2 }))
      assert.are.same({ 1, 2 }, c:get("k"))
      assert.is_true(d:delete("k"))
      d:close()
    end)
  end)

  describe("directories", function()
    it("are created 0700; hostile ones are refused", function()
      local real = dir .. "/real"
      assert(os.execute("mkdir -m 700 " .. q(real)))
      assert(os.execute(("ln -s %s %s"):format(q(real), q(dir .. "/link"))))
      local none, msg, code = cache.open(dir .. "/link")
      assert.is_nil(none)
      assert.matches("refusing cache dir '.*/link': it is a symlink", msg)
      assert.are.equal("ELOOP", code)
      none, msg, code = cache.open(dir .. "/link/")
      assert.are.equal("ELOOP", code)
      for m, what in pairs { ["770"] = "group", ["707"] = "world",
        ["1777"] = "world", ["720"] = "group" } do
        local d = dir .. "/m" .. m
        assert(os.execute(("mkdir %s && chmod %s %s"):format(q(d), m, q(d))))
        none, msg, code = cache.open(d)
        assert.is_nil(none, what)
        assert.matches("group%- or world%-writable", msg)
        assert.are.equal("EPERM", code)
      end
      write_file(dir .. "/file", "")
      none, msg, code = cache.open(dir .. "/file")
      assert.are.equal("ENOTDIR", code)
      none, msg, code = cache.open(dir .. "/no/such")
      assert.matches("cannot create cache dir", msg)
      assert.are.equal("ENOENT", code)
    end)

    it("owned by another user is refused", function()
      -- As root, make one; as anyone else, /usr is root's and 0755.
      local d = "/usr"
      if sh("id -u"):match("%d+") == "0" then
        d = dir .. "/other"
        assert(os.execute(("mkdir -m 700 %s && chown nobody %s"):format(q(d), q(d))))
      end
      local none, msg, code = cache.open(d)
      assert.is_nil(none)
      assert.matches("owned by another user", msg)
      assert.are.equal("EPERM", code)
    end)

    it("the state dir: PROCMON_STATE_DIR, XDG_RUNTIME_DIR/procmon, /tmp/procmon-<uid>",
      function()
        local show = "print((require('procmon.sys').state_dir()))"
        local out = child(show, "PROCMON_STATE_DIR=" .. q(dir .. "/st/"))
        assert.are.equal(dir .. "/st\n", out)
        assert.are.equal("700", mode(dir .. "/st"))
        out = child(show, "env -u PROCMON_STATE_DIR XDG_RUNTIME_DIR=" .. q(dir))
        assert.are.equal(dir .. "/procmon\n", out)
        out = child(show, "env -u PROCMON_STATE_DIR -u XDG_RUNTIME_DIR")
        assert.are.equal("/tmp/procmon-" .. sh("id -u"):match("%d+") .. "\n", out)
        out = child("local c = assert(require('procmon.cache').open()); print(c.dir)",
          "PROCMON_STATE_DIR=" .. q(dir .. "/st"))
        assert.are.equal(dir .. "/st/cache\n", out)
        local bad = q(dir .. "/m777x")
        out = child("print(require('procmon.sys').state_dir())",
          ("mkdir %s && chmod 777 %s && PROCMON_STATE_DIR=%s"):format(bad, bad, bad))
        assert.matches("nil\trefusing state dir '.*m777x': it is group%- or "
          .. "world%-writable: EPERM: operation not permitted\tEPERM", out)
      end)
  end)

  describe("misuse", function()
    it("raises with the argument named", function()
      local cases = {
        { function() c:get(1) end, "bad argument #1 to 'get' %(string expected, got number%)" },
        { function() c:set(nil, 1) end, "bad argument #1 to 'set' %(string expected, got nil%)" },
        { function() c:set("k", 1, -1) end, "bad argument #3 to 'set' %(ttl must be a positive number" },
        { function() c:set("k", 1, "10") end, "bad argument #3 to 'set' %(number expected, got string%)" },
        { function() c:set("k", 1, 0 / 0) end, "bad argument #3 to 'set' %(ttl must be" },
        { function() c:update("k", 1) end, "bad argument #2 to 'update' %(function expected, got number%)" },
        { function() c:remember("k", nil, nil) end, "bad argument #3 to 'remember' %(function expected" },
        { function() c:keys(5) end, "bad argument #1 to 'keys' %(string expected, got number%)" },
        { function() c.get({}, "k") end, "calling 'get' on bad self" },
        { function() cache.open(dir, { durable = "yes" }) end, "option 'durable': boolean expected" },
        { function() cache.open(dir, { dur = true }) end, "bad argument #2 to 'open' %(unknown option 'dur'%)" },
        { function() cache.open(42) end, "bad argument #1 to 'open' %(string expected, got number%)" },
      }
      for _, case in ipairs(cases) do
        assert.error_matches(case[1], case[2])
        -- luassert drops the position; it is the caller's line.
        local _, err = pcall(case[1])
        assert.matches("cache_spec.lua:%d+: ", err)
      end
      local _, err = pcall(function() c:set("k", print) end)
      assert.matches("cache_spec.lua:%d+: bad argument #2 to 'set'", err)
    end)

    it("of a closed cache raises; close is idempotent", function()
      local d = assert(cache.open(dir))
      d:close()
      d:close()
      assert.error_matches(function() d:get("k") end, "attempt to use a closed cache")
      do
        local e <close> = assert(cache.open(dir))
        assert(e:set("k", 1))
      end
      assert.are.equal(1, c:get("k"))
    end)
  end)
end)
