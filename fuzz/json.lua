-- procmon.json: decode never raises on bytes; what decodes encodes again,
-- and encode/decode round-trips it exactly (types, null, [] vs {}). The
-- text itself may differ: object members come in table order.
local C = dofile(FUZZ_DIR .. "/common.lua")
local json, check, same = C.json, C.check, C.same

return function(s)
  local v, pos, code = json.decode(s)
  if v == nil then
    check(type(pos) == "string", "decode failed without a message", s)
    check(code == "EINVAL" or code == "EINCOMPLETE", "decode code " .. tostring(code), s)
    return
  end
  check(math.type(pos) == "integer" and pos > 1 and pos <= #s + 1, "decode position " .. tostring(pos), s)
  local ok, e = pcall(json.encode, v)
  check(ok, "a decoded value does not encode: " .. tostring(e), s)
  local v2, p2 = json.decode(e)
  check(v2 ~= nil, "the encoding does not decode: " .. tostring(p2) .. " " .. e, s)
  check(p2 == #e + 1, "the encoding decodes partly", s)
  check(same(v, v2), "round trip changed the value: " .. e, s)
  -- decode(s, init) from some position inside: no raise, a sane answer.
  local init = #s > 0 and (s:byte(1) % #s) + 1 or 1
  local w, q = json.decode(s, init)
  check(w ~= nil or type(q) == "string", "decode at init gave no message", s)
end
