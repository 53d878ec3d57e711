-- Helpers of the Lua checks (loaded by each fuzz/<target>.lua).
local json = require "procmon.json"
local M = {}

--- Deep equality of decoded JSON values: the same types (integer vs float
--- included), the same array marks, the same keys.
function M.same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    return math.type(a) == math.type(b) and (a == b or (a ~= a and b ~= b))
  end
  if type(a) ~= "table" then return a == b end
  if getmetatable(a) ~= getmetatable(b) then return false end
  for k, v in pairs(a) do
    if not M.same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

--- Raises with the input shown when 'ok' is false.
function M.check(ok, what, s)
  if not ok then error(("%s (input %q)"):format(what, s), 2) end
end

M.json = json
return M
