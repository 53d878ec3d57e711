--- procmon.json: the project's one JSON codec (the cache's exact codec).
--- Integers stay integers, floats round-trip, null and [] are faithful.
--- Interim facade over procmon.store; the codec moves to its own C file.
if not package.preload["procmon.store"] then require "procmon" end
local store = require "procmon.store"

local M = { null = store.null, array_mt = store.array_mt }

--- Encodes a Lua value; raises on values JSON cannot hold.
function M.encode(value)
  local s, why = store.encode(value)
  if not s then error("bad argument #1 to 'encode' (" .. tostring(why) .. ")", 2) end
  return s
end

--- Decodes one JSON value: value, position after it | nil, msg, code.
function M.decode(s, init)
  if type(s) ~= "string" then
    error("bad argument #1 to 'decode' (string expected, got " .. type(s) .. ")", 2)
  end
  local v, msg = store.decode(init and s:sub(init) or s)
  if v == nil and msg then return nil, msg, "EINVAL" end
  return v, #s + 1
end

return M
