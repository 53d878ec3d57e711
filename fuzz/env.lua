-- procmon.env.decode on hostile variables: the input, split at NUL bytes,
-- gives PROCESS_PARENT_PID, _SESSION_ID, _TASK_ID and _CONFIG. decode
-- never raises; it returns nil, nil + a message, or well-typed metadata,
-- which encode (when it accepts it) turns back into the same metadata.
local C = dofile(FUZZ_DIR .. "/common.lua")
local env = require "procmon.env"
local check, same = C.check, C.same
local names = { "PROCESS_PARENT_PID", "PROCESS_SESSION_ID", "PROCESS_TASK_ID", "PROCESS_CONFIG" }

return function(s)
  local vars, i = {}, 1
  for part in (s .. "\0"):gmatch("([^%z]*)%z") do
    if names[i] then vars[names[i]] = part end
    i = i + 1
  end
  local ok, meta, err = pcall(env.decode, vars)
  check(ok, "decode raised: " .. tostring(meta), s)
  if meta == nil then
    check(err == nil or type(err) == "string", "decode error is not a string", s)
    return
  end
  check(type(meta) == "table", "metadata is not a table", s)
  check(meta.parent_pid == nil or (math.type(meta.parent_pid) == "integer" and meta.parent_pid > 0),
    "parent_pid", s)
  check(meta.session_id == nil or (type(meta.session_id) == "string" and meta.session_id ~= ""),
    "session_id", s)
  check(meta.config == nil or (type(meta.config) == "table" and getmetatable(meta.config) == nil),
    "config", s)
  -- Round trip: what encode accepts decodes to the same metadata.
  local input = { parent_pid = meta.parent_pid or false, session_id = meta.session_id,
    task_id = meta.task_id, config = meta.config }
  local eok, encoded = pcall(env.encode, input)
  if not eok then
    check(tostring(encoded):find("limit", 1, true) or tostring(encoded):find("encode", 1, true),
      "encode refused decoded metadata: " .. tostring(encoded), s)
    return
  end
  local back = env.decode(encoded)
  check(back ~= nil and same(back, meta), "encode/decode changed the metadata", s)
end
