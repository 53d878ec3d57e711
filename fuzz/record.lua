-- The record scanner against procmon.json: a record the decoder reads as
-- an object is one the scanner follows, and the fields it takes are the
-- decoder's (where they have the types procmon writes). Keys written with
-- escapes are not procmon's and are skipped by the comparison.
local C = dofile(FUZZ_DIR .. "/common.lua")
local json, check = C.json, C.check
local SP = "[ \t\n\r]"

local function num(v) return math.type(v) == "float" and v or nil end

return function(s, ok, r)
  local t, pos = json.decode(s)
  if type(t) ~= "table" or getmetatable(t) == json.array_mt or s:find("\\", 1, true)
      or not s:match("^" .. SP .. "*{") or not s:sub(pos):match("^" .. SP .. "*$") then
    return
  end
  check(ok, "a JSON object the scanner cannot follow", s)
  if math.type(t.pid) == "integer" then check(r.pid == t.pid, "pid", s) end
  if t.pid == nil then check(r.pid == nil, "pid where there is none", s) end
  if math.type(t.owner_pid) == "integer" then check(r.owner_pid == t.owner_pid, "owner_pid", s) end
  if num(t.started_at) then check(r.started_at == t.started_at, "started_at", s) end
  if num(t.expires_at) then check(r.expires_at == t.expires_at, "expires_at", s) end
  if t.expires_at == nil or t.expires_at == json.null then
    check(r.expires_at == nil, "expires_at where there is none", s)
  end
  if type(t.detached) == "boolean" then check(r.detached == t.detached, "detached", s) end
  if type(t.boot_id) == "string" and #t.boot_id < 40 then check(r.boot_id == t.boot_id, "boot_id", s) end
end
