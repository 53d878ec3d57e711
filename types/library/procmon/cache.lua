---@meta procmon.cache
-- LuaLS definitions of `require "procmon.cache"` (also `pm.cache`): a file
-- cache with TTL, safe across processes. Checked by spec/types_spec.lua.

---@class procmon.CacheOptions
---@field dir? string default <state dir>/cache
---@field durable? boolean fsync every write (survives a power loss)

---@class procmon.Cache
---@field dir string the cache directory
---@field durable boolean
local Cache = {}

--- The value; nil when missing, expired or unreadable.
---@param key string
---@return any
function Cache:get(key) end

--- Stores `value` (any JSON-encodable value; nil deletes), with a TTL in seconds.
---@param key string
---@param value any
---@param ttl? number
---@return true
function Cache:set(key, value, ttl) end

--- true if an entry was removed, false if there was none.
---@param key string
---@return boolean
function Cache:delete(key) end

---@param key string
---@return boolean
function Cache:has(key) end

--- The live keys starting with `prefix`, sorted bytewise.
---@param prefix? string
---@return string[]
function Cache:keys(prefix) end

--- fn(old)'s result, stored under the key's cross-process lock (nil deletes).
---@generic T
---@param key string
---@param fn fun(old: T|nil): T|nil
---@param ttl? number
---@return T|nil
function Cache:update(key, fn, ttl) end

--- The cached value, or fn()'s result stored with `ttl` (fn runs once
--- across processes).
---@generic T
---@param key string
---@param ttl number|nil
---@param fn fun(): T
---@return T
function Cache:remember(key, ttl, fn) end

--- Removes expired and corrupt entries and stale temporary files.
---@return integer|nil removed
---@return string? err
---@return string? code
function Cache:purge() end

--- Closes the directory (idempotent); also `local c <close> = ...`.
function Cache:close() end

---@class procmon.cache
local cache = {}

--- The JSON null (= procmon.json.null).
---@type lightuserdata
cache.null = nil

--- Metatable marking an empty table as [] (= procmon.json.array_mt).
---@type table
cache.array_mt = {}

--- Opens (creating it 0700 if missing) a cache directory, or fail.
---@param dir? string|procmon.CacheOptions
---@param opts? procmon.CacheOptions
---@return procmon.Cache|nil cache
---@return string? err
---@return string? code
function cache.open(dir, opts) end

return cache
