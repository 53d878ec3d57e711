-- A cache entry, against procmon.json: bytes that decode (whole) to
-- { key = "k", value = <not null>, expires_at = <number, null or absent> }
-- are an entry of key "k" with that value; and an accepted entry is one.
local C = dofile(FUZZ_DIR .. "/common.lua")
local json, check, same = C.json, C.check, C.same

return function(s, value, expires_at, ok)
  local t, pos = json.decode(s)
  local good = type(t) == "table" and pos == #s + 1 and t.key == "k" and t.value ~= nil
    and (t.expires_at == nil or t.expires_at == json.null or type(t.expires_at) == "number")
  if ok then
    check(value ~= nil, "an entry without a value", s)
    check(expires_at == nil or type(expires_at) == "number", "expires_at", s)
  end
  if good then
    check(ok, "a good entry read as a miss", s)
    check(same(value, t.value), "the value differs from procmon.json's", s)
    check(expires_at == (type(t.expires_at) == "number" and t.expires_at or nil), "expires_at differs", s)
  elseif ok and t ~= nil then
    check(false, "an entry procmon.json reads otherwise was accepted", s)
  end
end
