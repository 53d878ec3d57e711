--- procmon.cache: a file cache with TTL, safe across processes.
---
--- One JSON file per key in a private directory (default: <state dir>/cache):
---   {"key":"...","expires_at":<epoch seconds or null>,"value":...}
--- Writes are atomic (temp file + rename), `update` and `remember` lock the
--- key across processes, and a corrupt, foreign or expired file reads as a
--- miss. The file work is in C (src/pm_store.c, module "procmon.store"), the
--- JSON is procmon.json's; this file adds the argument checks, TTLs and
--- locking.
---
--- Errors: misuse raises ("bad argument #1 to 'get' (string expected, got
--- nil)"); system failures return nil, msg, code (code: "EACCES", ...).

if not package.preload["procmon.store"] then require "procmon" end
local store = require "procmon.store"
local sys = require "procmon.sys"
local json = require "procmon.json"

local M = {}

--- The JSON null (the same value as cjson.null): a null inside a value reads
--- back as this, and writes as null.
M.null = json.null

--- Metatable of JSON arrays: an empty table carrying it is written as [];
--- every empty array read from a file carries it, so [] stays [].
M.array_mt = json.array_mt

---@class procmon.Cache
---@field dir string       the cache directory
---@field durable boolean  fsync on every write
local Cache = {}
Cache.__index = Cache
Cache.__name = "procmon.Cache"

-- The checks below are called straight from the public functions, so level
-- 4 (arg_error <- check_* <- the method <- its caller) is the user's line.
local function arg_error(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 4)
end

local function check_type(v, want, n, fname, optional)
  if type(v) == want or (optional and v == nil) then return end
  arg_error(n, fname, ("%s expected, got %s"):format(want, type(v)))
end

-- A path goes to the system as a C string, which a NUL byte would cut.
local function check_path(path, n, fname)
  if path and path:find("\0", 1, true) then arg_error(n, fname, "path contains a NUL byte") end
end

local function check_ttl(ttl, n, fname)
  if ttl == nil then return end
  if type(ttl) ~= "number" then
    arg_error(n, fname, "number expected, got " .. type(ttl))
  end
  if not (ttl > 0 and ttl < math.huge) then
    arg_error(n, fname, "ttl must be a positive number of seconds")
  end
end

--- The open store of a cache, raising on a closed one or a bad self.
local function store_of(self, fname)
  if getmetatable(self) ~= Cache then
    error(("calling '%s' on bad self (procmon.Cache expected, got %s)")
      :format(fname, type(self)), 3)
  end
  local st = self._store
  if not st then error("attempt to use a closed cache", 3) end
  return st
end

local function expiry(ttl, keep)
  if ttl then return store.now() + ttl end
  return keep
end

-- {=== locks ===}
--
-- update and remember hold a key's lock. Across processes it is a flock
-- (st:lock); inside this Lua state, `turns` says who has the key, whatever
-- Cache object it goes through: the directory's identity (device and
-- inode) plus the key. A flock cannot tell two users in one process apart
-- (two Cache objects, two open files: the second would wait for ever on
-- the first), so this table does:
-- - the same coroutine asking again (a nested update, through any object)
--   would deadlock: it raises at once;
-- - another task (or the main thread while a task holds it) waits for its
--   turn, yielding (the main thread runs the loop meanwhile); turns are
--   handed over in order.

local co_running, co_status = coroutine.running, coroutine.status
local turns = {}  -- id -> { co = holder, main = is it the main thread,
                  --        waiters = { { co, main, wake }... }, lock = Lock }

local function pm() return require "procmon" end

local function nested(fname, key, why)
  error(("%s: key %q is already locked by this process (%s)")
    :format(fname, key, why), 5)  -- nested <- take_turn <- hold <- method
end

--- Passes the key's turn to the next waiter (woken from the loop, not from
--- inside the holder's <close>), or frees it.
local function pass_turn(id, turn)
  local lock = turn.lock
  turn.lock = nil
  if lock then lock:unlock() end
  local w = table.remove(turn.waiters, 1)
  if not w then
    if turns[id] == turn then turns[id] = nil end
    return
  end
  turn.co, turn.main = w.co, w.main
  pm()._timer(0, w.wake)
end

--- Waits (yielding, or running the loop) until `turn` is handed to `co`.
local function wait_turn(id, turn, co, main, fname)
  local w = { co = co, main = main }
  local ok, err = pcall(pm()._await, fname, function(wake)
    w.wake = wake
    turn.waiters[#turn.waiters + 1] = w
  end)
  if ok then return end
  -- The wait ended in an error (an interruption, a callback's error):
  -- leave the queue, or pass on a turn that came meanwhile.
  for i, x in ipairs(turn.waiters) do
    if x == w then table.remove(turn.waiters, i) break end
  end
  if turn.co == co then pass_turn(id, turn) end
  error(err, 0)
end

--- Takes this state's turn on `id`: at once when free, after the holder
--- when it is another task or thread; raises when that would deadlock.
local function take_turn(id, key, fname)
  local co, main = co_running()
  local turn = turns[id]
  if turn and co_status(turn.co) == "dead" then  -- a task died holding it
    pass_turn(id, turn)
    turn = turns[id]
  end
  if not turn then
    turn = { co = co, main = main, waiters = {} }
    turns[id] = turn
    return turn
  end
  if turn.co == co then nested(fname, key, "nested update or remember of the same key") end
  if co_status(turn.co) == "normal" and not turn.main then
    nested(fname, key, "held by a coroutine that resumed this one")
  end
  if main and pm()._in_callback() then
    nested(fname, key, "held by a task; a callback cannot wait for it: use procmon.task")
  end
  wait_turn(id, turn, co, main, fname)
  return turn
end

--- The cross-process lock: in a coroutine (a task) the wait yields to the
--- loop between tries; on the main thread st:lock blocks (polling).
local function acquire(st, key)
  local _, main = co_running()
  if main then return st:lock(key) end
  local lock, msg, code = st:lock(key, true)
  local pause = 0.001
  while lock == false do
    pm().sleep(pause)
    pause = math.min(pause * 2, 0.032)
    lock, msg, code = st:lock(key, true)
  end
  return lock, msg, code
end

--- Holds the key's lock until the returned value is closed.
local function hold(self, st, key, fname)
  local id = self._id .. key
  local turn = take_turn(id, key, fname)
  local lock, msg, code = acquire(st, key)
  if not lock then
    pass_turn(id, turn)
    return nil, msg, code
  end
  turn.lock = lock
  return setmetatable({}, { __close = function() pass_turn(id, turn) end })
end

-- }===

--- Writes key = value, raising at the caller's line if it cannot be encoded.
local function store_set(st, key, value, expires_at, fname, what)
  local ok, msg, code = st:set(key, value, expires_at)
  if ok == false then
    error(("bad %s to '%s' (%s)"):format(what, fname, msg), 3)
  end
  return ok, msg, code
end

---@param key string
---@return any|nil value  nil when missing or expired (or nil, msg, code)
function Cache:get(key)
  local st = store_of(self, "get")
  check_type(key, "string", 1, "get")
  local v, msg, code = st:get(key)
  if v == nil then return nil, msg, code end
  return v
end

--- Stores value (any JSON-encodable Lua value) under key; a nil value
--- deletes the key. ttl: seconds until it expires (default: never).
---@param key string
---@param value any
---@param ttl? number
---@return true|nil ok, string? msg, string? code
function Cache:set(key, value, ttl)
  local st = store_of(self, "set")
  check_type(key, "string", 1, "set")
  check_ttl(ttl, 3, "set")
  if value == nil then
    local ok, msg, code = st:delete(key)
    if ok == nil then return nil, msg, code end
    return true
  end
  local ok, msg, code = store_set(st, key, value, expiry(ttl), "set",
    "argument #2")
  return ok, msg, code  -- not a tail call: store_set raises at level 3
end

--- Removes key; true if an entry was there, false if not.
---@param key string
---@return boolean|nil removed, string? msg, string? code
function Cache:delete(key)
  local st = store_of(self, "delete")
  check_type(key, "string", 1, "delete")
  return st:delete(key)
end

---@param key string
---@return boolean|nil present, string? msg, string? code
function Cache:has(key)
  local st = store_of(self, "has")
  check_type(key, "string", 1, "has")
  local v, msg, code = st:get(key)
  if v == nil and msg then return nil, msg, code end
  return v ~= nil
end

--- The live keys (with the given prefix), sorted bytewise.
---@param prefix? string
---@return string[]|nil keys, string? msg, string? code
function Cache:keys(prefix)
  local st = store_of(self, "keys")
  check_type(prefix, "string", 1, "keys", true)
  local keys, msg, code = st:keys(prefix)
  if not keys then return nil, msg, code end
  table.sort(keys)
  return keys
end

--- Atomically (across processes) replaces the value with fn(old): old is
--- nil when missing. A nil result deletes the key. Without ttl, the entry
--- keeps the expiry it had. If fn raises, the old value stays and the error
--- propagates. Returns the new value.
---@param key string
---@param fn fun(old: any): any
---@param ttl? number
---@return any new, string? msg, string? code
function Cache:update(key, fn, ttl)
  local st = store_of(self, "update")
  check_type(key, "string", 1, "update")
  check_type(fn, "function", 2, "update")
  check_ttl(ttl, 3, "update")
  local guard <close>, msg, code = hold(self, st, key, "update")
  if not guard then return nil, msg, code end
  local old, expires_at, ecode = st:get(key)
  if old == nil and expires_at then return nil, expires_at, ecode end
  local new = fn(old)
  if new == nil then
    local ok, dmsg, dcode = st:delete(key)
    if ok == nil then return nil, dmsg, dcode end
    return nil
  end
  local ok, smsg, scode = store_set(st, key, new, expiry(ttl, expires_at),
    "update", "result of the function")
  if not ok then return nil, smsg, scode end
  return new
end

--- Returns the cached value, or computes it with fn(), stores it with ttl
--- and returns it. Concurrent callers in other processes wait for the one
--- computing (a lock), so fn runs once. A nil result is not stored.
---@param key string
---@param ttl number|nil
---@param fn fun(): any
---@return any value, string? msg, string? code
function Cache:remember(key, ttl, fn)
  local st = store_of(self, "remember")
  check_type(key, "string", 1, "remember")
  check_ttl(ttl, 2, "remember")
  check_type(fn, "function", 3, "remember")
  local v, msg, code = st:get(key)
  if v ~= nil then return v end
  if msg then return nil, msg, code end
  local guard <close>, lmsg, lcode = hold(self, st, key, "remember")
  if not guard then return nil, lmsg, lcode end
  v, msg, code = st:get(key)  -- computed by another process meanwhile?
  if v ~= nil then return v end
  if msg then return nil, msg, code end
  v = fn()
  if v == nil then return nil end
  local ok, smsg, scode = store_set(st, key, v, expiry(ttl),
    "remember", "result of the function")
  if not ok then return nil, smsg, scode end
  return v
end

--- Removes expired and corrupt entries and stale temporary files.
---@return integer|nil removed, string? msg, string? code
function Cache:purge()
  return store_of(self, "purge"):purge()
end

--- Closes the directory descriptor; idempotent. Also __close.
function Cache:close()
  local st = self._store
  self._store = nil
  if st then st:close() end
end
Cache.__close = Cache.close

function Cache:__tostring()
  return ("procmon.Cache (%s)%s"):format(self.dir,
    self._store and "" or " (closed)")
end

local open_options = { dir = true, durable = true }

local function check_options(opts)
  for k in pairs(opts) do
    if not open_options[k] then
      arg_error(2, "open", ("unknown option '%s'"):format(tostring(k)))
    end
  end
  if opts.durable ~= nil and type(opts.durable) ~= "boolean" then
    arg_error(2, "open", "option 'durable': boolean expected, got "
      .. type(opts.durable))
  end
end

--- Opens (creating it 0700 if needed) a cache directory.
--- open([dir], [opts]) or open(opts) with opts.dir; opts.durable = true
--- fsyncs every write (file and directory): slower, survives power loss.
---@param dir? string   default: <state dir>/cache
---@param opts? { dir?: string, durable?: boolean }
---@return procmon.Cache|nil cache, string? msg, string? code
function M.open(dir, opts)
  if type(dir) == "table" and opts == nil then dir, opts = dir.dir, dir end
  check_type(dir, "string", 1, "open", true)
  check_path(dir, 1, "open")
  check_type(opts, "table", 2, "open", true)
  opts = opts or {}
  check_options(opts)
  if dir == nil then
    local sd, msg, code = sys.state_dir()
    if not sd then return nil, msg, code end
    dir = sd .. "/cache"
  end
  dir = dir:gsub("(.)/+$", "%1")
  local st, msg, code = store.open(dir, opts.durable)
  if not st then return nil, msg, code end
  return setmetatable({ dir = dir, durable = opts.durable == true,
    _store = st, _id = st:ident() }, Cache)
end

return M
