-- The payload scanner against procmon.json: when the input is one JSON
-- value (JSON spaces around it at most), the scanner finds it, and what
-- it keeps decodes to the same value.
local C = dofile(FUZZ_DIR .. "/common.lua")
local json, check, same = C.json, C.check, C.same
local SP = "[ \t\n\r]"

return function(s, how, len)
  check(len >= 0 and len <= #s, "end out of range", s)
  local v, pos = json.decode(s)
  if v == nil or not s:sub(pos):match("^" .. SP .. "*$") then return end
  check(how == "value", "a JSON value read as " .. how, s)
  local kept = s:sub(1, len)
  local w = json.decode(kept)
  check(w ~= nil and same(v, w), "the value kept (" .. len .. " bytes) is not the value", s)
end
