-- procmon.json, the project's one JSON codec: data tables of inputs and
-- expected outputs (in the style of lua-cjson's tests/test.lua), then the
-- properties that tables cannot show (round trips, positions, sharing).
local pm = require "procmon"
local H = require "helpers"
local json = require "procmon.json"

local null, array_mt = json.null, json.array_mt
local function arr(t) return setmetatable(t or {}, array_mt) end
local FFFD = "\u{FFFD}"

-- A table nested n deep: { { ... inner ... } } (inner: {} by default).
local function nest(n, inner)
  local v = inner or {}
  for _ = 2, n do v = { v } end
  return v
end

local q = H.q

-- Deep equality that also compares number subtypes and metatables.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    return math.type(a) == math.type(b) and (a == b or (a ~= a and b ~= b))
      and (a ~= 0 or 1 / a == 1 / b)
  end
  if type(a) ~= "table" then return a == b end
  if getmetatable(a) ~= getmetatable(b) then return false end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) .. " (" .. (math.type(v) or type(v)) .. ")" end
  local ok, s = pcall(json.encode, v)
  return ok and s or tostring(v)
end

describe("procmon.json", function()
  after_each(H.assert_no_live_handles)

  describe("encode", function()
    local cyclic = {}
    cyclic.a = { cyclic }

    -- { what, value, exact JSON text }
    local cases = {
      { "an integer", 42, "42" },
      { "a negative integer", -7, "-7" },
      { "maxinteger, all 64 bits", math.maxinteger, "9223372036854775807" },
      { "mininteger", math.mininteger, "-9223372036854775808" },
      { "2^53 + 1 as an integer", (1 << 53) + 1, "9007199254740993" },
      { "an integral float, keeping .0", 3.0, "3.0" },
      { "2^53 as a float", 2.0 ^ 53, "9007199254740992.0" },
      { "0.1", 0.1, "0.1" },
      { "0.1 + 0.2, shortest exact", 0.1 + 0.2, "0.30000000000000004" },
      { "1e300", 1e300, "1e+300" },
      { "-2.5e-300", -2.5e-300, "-2.5e-300" },
      { "-0.0 with its sign", -0.0, "-0.0" },
      { "the smallest denormal", 2 ^ -1074, "4.94065645841247e-324" },
      { "true", true, "true" },
      { "false", false, "false" },
      { "nil", nil, "null" },
      { "json.null", null, "null" },
      { "an empty string", "", '""' },
      { "quote and backslash", "a\"b\\c", [["a\"b\\c"]] },
      { "named control escapes", "\n\t\r\b\f", [["\n\t\r\b\f"]] },
      { "other control bytes", "\0\1\31", [["\u0000\u0001\u001f"]] },
      { "DEL and '/' as they are", "\127/", "\"\127/\"" },
      { "UTF-8 as it is", "é✓😀", '"é✓😀"' },
      { "invalid UTF-8 byte for byte", "\xff\xfe\x80", '"\xff\xfe\x80"' },
      { "a sequence", { 1, "a", false }, '[1,"a",false]' },
      { "null inside a sequence", { 1, null, 3 }, "[1,null,3]" },
      { "an empty table", {}, "{}" },
      { "an empty table with array_mt", arr(), "[]" },
      { "an object", { a = 1 }, '{"a":1}' },
      { "an integer key of a non-sequence", { [2] = "b" }, '{"2":"b"}' },
      { "a float key", { [1.5] = true }, '{"1.5":true}' },
      { "nested values", { a = { b = { 1, arr() } } }, '{"a":{"b":[1,[]]}}' },
      { "128 levels", nest(128), ("["):rep(127) .. "{}" .. ("]"):rep(127) },
    }

    for _, case in ipairs(cases) do
      it(case[1], function()
        assert.are.equal(case[3], json.encode(case[2]))
      end)
    end

    -- { what, value, message (pattern) }
    local errors = {
      { "a function", print, "cannot encode a function value" },
      { "a function inside", { a = { 1, print } }, "cannot encode a function value %(at value%.a%[2%]%)" },
      { "a cycle", cyclic, "cannot encode a table that contains itself %(at value%.a%[1%]%)" },
      { "NaN", 0 / 0, "cannot encode NaN or infinity" },
      { "infinity", math.huge, "cannot encode NaN or infinity" },
      { "-infinity", { x = -math.huge }, "cannot encode NaN or infinity %(at value%.x%)" },
      { "a thread", coroutine.create(print), "cannot encode a thread value" },
      { "a full userdata", io.stdout, "cannot encode a userdata value" },
      { "a boolean key", { [true] = 1 }, "cannot encode a table key of type boolean" },
      { "129 levels", nest(129), "cannot encode a value nested more than 128 deep" },
    }

    for _, case in ipairs(errors) do
      it("raises on " .. case[1] .. ", at the caller's line", function()
        local ok, err = pcall(function() return json.encode(case[2]) end)
        assert.is_false(ok)
        assert.matches("^[^\n]*json_spec%.lua:%d+: bad argument #1 to 'encode' %("
          .. case[3], err)
      end)
    end

    it("raises without a value", function()
      assert.error_matches(function() json.encode() end,
        "bad argument #1 to 'encode' %(value expected%)")
    end)
  end)

  describe("decode", function()
    -- { JSON text, value, position after it (default #text + 1) }
    local cases = {
      { "42", 42 },
      { "-0", 0 },
      { "-0.0", -0.0 },
      { "9223372036854775807", math.maxinteger },
      { "-9223372036854775808", math.mininteger },
      { "9007199254740993", (1 << 53) + 1 },
      { "9223372036854775808", 2.0 ^ 63 },
      { "1.5e3", 1500.0 },
      { "1E-2", 0.01 },
      { "2e+2", 200.0 },
      { "0.1", 0.1 },
      { "3.0", 3.0 },
      { "true", true },
      { "false", false },
      { "null", null },
      { '""', "" },
      { [["\"\\\/\b\f\n\r\t"]], "\"\\/\b\f\n\r\t" },
      { [["\u0041\u00e9\u20AC"]], "Aé€" },
      { [["\u0000"]], "\0" },
      { [["\ud83d\ude00"]], "😀" },
      { [["\uD834\uDD1E"]], "𝄞" },
      { [["\ud83d"]], FFFD },
      { [["\ude00"]], FFFD },
      { [["\ude00\ud83d"]], FFFD .. FFFD },
      { [["\ud83dA"]], FFFD .. "A" },
      { [["\ud83d\u0041"]], FFFD .. "A" },
      { [["\ud83d\ud83d\ude00"]], FFFD .. "😀" },
      { '"é✓😀"', "é✓😀" },
      { '"\xff\xfe\x80"', "\xff\xfe\x80" },
      { '"\127"', "\127" },
      { "[]", arr() },
      { "{}", {} },
      { ' [1, [2, {"a": null, "b": []}]] ', { 1, { 2, { a = null, b = arr() } } } },
      { '{"a":1,"a":2}', { a = 2 } },
      { " \t\r\n1 \n\t", 1 },
      { ("["):rep(128) .. ("]"):rep(128), nest(128, arr()) },
      -- The first value only, and where the rest begins.
      { "1 x", 1, 3 },
      { "{}{}", {}, 3 },
      { "[1]]", { 1 }, 4 },
      { "truex", true, 5 },
      { '"a"b', "a", 4 },
      { "1.5.3", 1.5, 4 },
      { '1 2', 1, 3 },
    }

    for _, case in ipairs(cases) do
      it(("%q"):format(case[1]), function()
        local v, pos = json.decode(case[1])
        local want = case[2]
        assert(same(want, v), ("want %s, got %s"):format(show(want), show(v)))
        assert.are.equal(case[3] or #case[1] + 1, pos)
      end)
    end

    -- { JSON text, code, byte offset (1-based), message (pattern) }
    local I, V = "EINCOMPLETE", "EINVAL"
    local errors = {
      { "", I, 1 },
      { "  \n", I, 4 },
      { "[", I, 2 },
      { "[1", I, 3 },
      { "[1,", I, 4 },
      { '{"a"', I, 5 },
      { '{"a":', I, 6 },
      { '{"a":1', I, 7 },
      { '{"a":1,', I, 8 },
      { '"abc', I, 5 },
      { '"abc\\', I, 6 },
      { '"\\u12', I, 6 },
      { '"\\ud83d\\ude0', I, 13 },
      { '"\\ud83d', I, 8 },
      { "tru", I, 4 },
      { "fals", I, 5 },
      { "n", I, 2 },
      { "-", I, 2 },
      { "1.", I, 3 },
      { "1e", I, 3 },
      { "1e+", I, 4 },
      { "x", V, 1, "unexpected 'x'" },
      { "[1 2]", V, 4, "unexpected '2'" },
      { "[1,]", V, 4, "unexpected ']'" },
      { "[1,,2]", V, 4 },
      { "{1:2}", V, 2 },
      { '{"a" 1}', V, 6 },
      { '{"a":1 "b":2}', V, 8 },
      { "01", V, 2, "leading zero" },
      { "-01", V, 3, "leading zero" },
      { "-x", V, 2 },
      { "1.x", V, 3, "digit expected" },
      { "1ex", V, 3, "digit expected" },
      { ".5", V, 1 },
      { "+1", V, 1 },
      { "NaN", V, 1 },
      { "Infinity", V, 1 },
      -- Found by fuzz/json.c: these read as infinity, which encode refuses.
      { "1e400", V, 1, "number out of range" },
      { "[-2e1269]", V, 2, "number out of range" },
      { '{"n":999E99999999999}', V, 6, "number out of range" },
      { "trux", V, 4 },
      { "nulL", V, 4 },
      { "'a'", V, 1 },
      { "/* c */ 1", V, 1 },
      { '"a\nb"', V, 3, "control character in string" },
      { '"a\tb"', V, 3, "control character in string" },
      { '"\0"', V, 2, "control character in string" },
      { '"\\x"', V, 3, "invalid escape" },
      { '"\\U0041"', V, 3, "invalid escape" },
      { '"\\u12x4"', V, 6, "4 hex digits expected" },
      { '"\\u12"', V, 6, "4 hex digits expected" },
      { "\xef\xbb\xbf1", V, 1, "unexpected byte 0xef" },
      { ("["):rep(129) .. ("]"):rep(129), V, 129, "nested more than 128 deep" },
      { ("["):rep(200), V, 129, "nested more than 128 deep" },
    }

    for _, case in ipairs(errors) do
      it(("%q: %s at byte %d"):format(case[1], case[2], case[3]), function()
        local v, msg, code = json.decode(case[1])
        assert.is_nil(v)
        assert.are.equal(case[2], code)
        local kind = code == I and "incomplete" or "invalid"
        assert.matches(("^%s JSON at byte %d: "):format(kind, case[3]), msg)
        if code == I then assert.matches("unexpected end of input$", msg) end
        if case[4] then assert.matches(case[4], msg) end
      end)
    end

    -- { text, init, value, position after it }
    local inits = {
      { "[1,2] 3", 7, 3, 8 },
      { "[1,2] 3", 6, 3, 8 },
      { "xx 42", -2, 42, 6 },
      { "42", -100, 42, 3 },
      { "42", 0, 42, 3 },
      { "  [1]", 1, { 1 }, 6 },
    }

    it("starts at init, counted as string.find counts it", function()
      for _, case in ipairs(inits) do
        local v, pos = json.decode(case[1], case[2])
        assert(same(case[3], v), case[1] .. " from " .. case[2])
        assert.are.equal(case[4], pos)
      end
      local v, msg, code = json.decode("12", 3)
      assert.is_nil(v)
      assert.are.equal("EINCOMPLETE", code)
      assert.matches("at byte 3", msg)
      v, msg, code = json.decode('{"a":[1,x]}', 6)
      assert.is_nil(v)
      assert.are.equal("EINVAL", code)
      assert.matches("invalid JSON at byte 9: unexpected 'x'", msg)
      assert.are.equal("a", json.decode('{"a":[1,x]}', 2))
    end)

    it("reads a stream of values one after another", function()
      local s, pos, got = ' 1 "two" [3]\n{"four":4}\n', 1, {}
      while pos <= #s do
        local v, nxt, code = json.decode(s, pos)
        assert(v ~= nil, nxt)
        got[#got + 1], pos = v, nxt
      end
      assert.are.same({ 1, "two", { 3 }, { four = 4 } }, got)
      -- A value cut short asks for more bytes; with them it decodes.
      local part = '{"a": [1, 2'
      local v, _, code = json.decode(part)
      assert.is_nil(v)
      assert.are.equal("EINCOMPLETE", code)
      assert.are.same({ a = { 1, 2, 3 } }, json.decode(part .. ", 3]}"))
    end)

    it("raises on misuse", function()
      local cases = {
        { function() json.decode() end, "bad argument #1 to 'decode' %(string expected, got no value%)" },
        { function() json.decode(12) end, "bad argument #1 to 'decode' %(string expected, got number%)" },
        { function() json.decode("1", "x") end, "bad argument #2 to 'decode' %(number expected, got string%)" },
        { function() json.decode("1", 1.5) end, "bad argument #2 to 'decode' %(number has no integer representation%)" },
        { function() json.decode("1", 3) end, "bad argument #2 to 'decode' %(initial position out of range%)" },
      }
      for _, case in ipairs(cases) do
        local ok, err = pcall(case[1])
        assert.is_false(ok)
        assert.matches("json_spec%.lua:%d+: " .. case[2], err)
      end
    end)
  end)

  describe("round trips", function()
    it("keep integers (64 bits) and floats (bit for bit) with their types", function()
      local values = { 0, 1, -1, math.maxinteger, math.mininteger, (1 << 53) + 1,
        0.0, -0.0, 0.1, 1 / 3, math.pi, 2 ^ -1074, 2 ^ -1022, 1.7976931348623157e308,
        2.0 ^ 63, -2.0 ^ 63, 123456789.123, 1e15, 1e16, 1e-7, 5e-324 * 3 }
      -- And 2,000 doubles from random bit patterns (fixed seed).
      local rnd = 0x2545F4914F6CDD1D
      while #values < 2000 do
        rnd = rnd * 6364136223846793005 + 1442695040888963407
        local d = string.unpack("d", string.pack("i8", rnd))
        if d == d and d ~= math.huge and d ~= -math.huge then values[#values + 1] = d end
      end
      for _, v in ipairs(values) do
        local text = json.encode(v)
        local back = json.decode(text)
        assert(same(v, back), ("%s -> %s -> %s"):format(show(v), text, show(back)))
        local bits, backbits = string.pack("n", v), string.pack("n", back)
        assert(math.type(v) == "integer" or bits == backbits, text)
      end
    end)

    it("keep every byte of a string, valid UTF-8 or not", function()
      local bytes = {}
      for b = 0, 255 do bytes[#bytes + 1] = string.char(b) end
      local s = table.concat(bytes)
      assert.are.equal(s, json.decode(json.encode(s)))
      assert.are.equal(s:reverse(), json.decode(json.encode(s:reverse())))
    end)

    it("keep null, [] and {}", function()
      local v = { a = null, b = arr(), c = {}, d = { 1, null, 3 } }
      local back = json.decode(json.encode(v))
      assert.are.equal(null, back.a)
      assert.are.equal(array_mt, getmetatable(back.b))
      assert.is_nil(getmetatable(back.c))
      assert.are.equal(3, #back.d)
      assert.are.equal(json.encode(v), json.encode(back))
    end)
  end)

  describe("the module", function()
    it("is pm.json, and shares null and array_mt with the cache and cjson",
      function()
        assert.are.equal(json, pm.json)
        local cache = require "procmon.cache"
        assert.are.equal(cache.null, json.null)
        assert.are.equal(cache.array_mt, json.array_mt)
        assert.are.equal(require("cjson").null, json.null)
      end)

    it("can be required on its own, before procmon", function()
      local code = "local j = require 'procmon.json'; "
        .. "io.write(j.encode({ (1 << 53) + 1, 3.0 }), ' ', tostring(package.loaded.procmon))"
      local p = assert(io.popen(("%s -e %s"):format(q(H.lua), q(code))))
      local out = p:read("a")
      p:close()
      assert.are.equal("[9007199254740993,3.0] nil", out)
    end)

    it("writes what cjson reads", function()
      local cjson = require "cjson"
      local v = { name = "x", list = { 1, 2, { ok = true } }, n = 0.5 }
      assert.are.same(v, cjson.decode(json.encode(v)))
    end)
  end)
end)
