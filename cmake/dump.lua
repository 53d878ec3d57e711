-- Precompiles one embedded module: lua5.4 dump.lua SRC OUT NAME writes the
-- bytecode of SRC, with "@[procmon]/NAME.lua" as its chunk name (the name
-- the embedded source had).
--
-- Half stripped: the line numbers stay (tracebacks and error positions
-- inside procmon keep them), the names of locals and upvalues go. Those
-- names are most of what loading debug info costs (each is a string to
-- intern at every start: a sixth of a statusline's instructions), and
-- string.dump can only strip all or nothing. The rewrite walks the Lua 5.4
-- dump format (ldump.c) and is checked below: the result loads, and dumps
-- back to the same bytes.
local src, out, name = ...
local f = assert(io.open(src, "rb"))
local code = f:read("a")
f:close()
local fn = assert(load(code, "@[procmon]/" .. name .. ".lua"))
local bin = string.dump(fn)
assert(_VERSION == "Lua 5.4", "dump.lua reads the Lua 5.4 format only")

local pos = 1  -- next byte of bin to read
local parts = {}

local function copy(n) parts[#parts + 1] = bin:sub(pos, pos + n - 1); pos = pos + n end
local function size()  -- ldump.c dumpSize: 7 bits a byte, last one marked
  local x = 0
  repeat
    local b = bin:byte(pos)
    pos = pos + 1
    x = x * 128 + (b & 0x7f)
  until b >= 0x80
  return x
end
local function copy_size() local at = pos; local x = size(); parts[#parts + 1] = bin:sub(at, pos - 1); return x end
local function skip_string() local n = size(); if n > 0 then pos = pos + n - 1 end end
local function copy_string() local n = copy_size(); if n > 0 then copy(n - 1) end end

local VNUMINT, VNUMFLT, VSHRSTR, VLNGSTR = 0x03, 0x13, 0x04, 0x14

local function func()
  copy_string()                          -- source
  copy_size(); copy_size()               -- linedefined, lastlinedefined
  copy(3)                                -- numparams, is_vararg, maxstacksize
  copy(4 * copy_size())                  -- code
  for _ = 1, copy_size() do              -- constants
    local t = bin:byte(pos)
    copy(1)
    if t == VNUMINT or t == VNUMFLT then copy(8)
    elseif t == VSHRSTR or t == VLNGSTR then copy_string() end
  end
  copy(3 * copy_size())                  -- upvalues: instack, idx, kind
  for _ = 1, copy_size() do func() end   -- nested functions
  copy(copy_size())                      -- lineinfo, one byte per instruction
  for _ = 1, copy_size() do copy_size(); copy_size() end  -- abslineinfo
  for _ = 1, size() do skip_string(); size(); size() end  -- locvars: dropped
  parts[#parts + 1] = "\x80"              -- none (ldump.c writes a count...)
  local nup = copy_size()                 -- ...then each upvalue's name: NULL
  for _ = 1, nup do skip_string() end
  parts[#parts + 1] = ("\x80"):rep(nup)
end

-- Header: signature, version, format, LUAC_DATA, three sizes, LUAC_INT,
-- LUAC_NUM (the sizes are checked: 4-byte instructions, 8-byte numbers).
assert(bin:sub(1, 6) == "\x1bLua\x54\x00", "not Lua 5.4 bytecode")
assert(bin:sub(13, 15) == "\4\8\8", "unexpected instruction or number sizes")
copy(15 + 8 + 8 + 1)                     -- + sizeupvalues of the main closure
func()
assert(pos == #bin + 1, "bytecode not read to its end")
local half = table.concat(parts)

local back = assert(load(half, "=check", "b"))
assert(string.dump(back) == half, "half-stripped bytecode does not round-trip")

local o = assert(io.open(out, "wb"))
o:write(half)
o:close()
