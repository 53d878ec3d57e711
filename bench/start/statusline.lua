-- The cold-start subject: what a statusline does on every render. Reads
-- the payload from stdin, tracks the session through the cache (started_at
-- kept across runs), prints one line. bench/statusline.sh runs it.
local pm = require "procmon"
local sl = require "procmon.statusline"
local tracker = assert(pm.session.tracker{ ttl = 3600 })
sl.run(function(data, info)
  local rec = assert(tracker:track(data))
  return ("%s %s %s %s"):format(info.model_name or "?", sl.duration(pm.time() - rec.started_at),
    sl.bar(info.context_usage), sl.percent(info.context_usage))
end, { cache = tracker.cache })
