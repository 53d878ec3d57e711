---@meta procmon.statusline
-- LuaLS definitions of `require "procmon.statusline"`: helpers for a Claude
-- Code statusLine command. Checked by spec/types_spec.lua.

---@class procmon.StatuslineOptions: procmon.ReadOptions
---@field name? string for messages (default "statusline")
---@field fallback? string printed when nothing better is known
---@field cache? procmon.Cache keeps the last good line (default: the default cache)
---@field color? boolean false: no ANSI colours
---@field width? integer cut each line to this many cells
---@field keep? number seconds a last good line is kept (default 86400)

---@class procmon.statusline
local statusline = {}

--- Whether paint emits ANSI colours (off under NO_COLOR).
---@type boolean
statusline.color = true

--- ANSI codes by style name ("red", "bold", "gray", "bright_cyan"...).
---@type table<string, string>
statusline.codes = {}

--- The line printed when nothing better is known.
---@type string
statusline.fallback = "[statusline unavailable]"

--- Seconds during which a changed line is not stored again as the last
--- good line (5): the fallback may lag the last render by this much.
---@type number
statusline.keep_every = 5

--- Turns colours on or off (NO_COLOR still wins).
---@param on boolean
function statusline.set_color(on) end

--- text in a colour or style ("red", "bold red"), then a reset.
---@param style string
---@param text string
---@return string
function statusline.paint(style, text) end

--- A human duration: "45s", "3m 20s", "1h 05m", "2d 4h".
---@param seconds number|nil
---@return string
function statusline.duration(seconds) end

--- "22%"; "--%" for nil.
---@param pct number|nil
---@param decimals? integer
---@return string
function statusline.percent(pct, decimals) end

--- The colour of a usage figure: "green", "yellow" or "red".
---@param pct number|nil
---@return string
function statusline.level(pct) end

--- A usage bar `width` cells wide (default 10), coloured by level.
---@param pct number|nil
---@param width? integer
---@param opts? { fill?: string, empty?: string }
---@return string
function statusline.bar(pct, width, opts) end

--- A token count: "950", "18k", "1.2M".
---@param n number|nil
---@return string
function statusline.tokens(n) end

--- Cells a code point takes in a terminal: 0, 1 or 2.
---@param cp integer
---@return integer
function statusline.char_width(cp) end

--- s with invalid UTF-8 replaced by U+FFFD.
---@param s string
---@return string
function statusline.valid_utf8(s) end

--- Payload text made safe for a terminal (no control characters).
---@param s any
---@return string
function statusline.clean(s) end

--- Display width in terminal cells (escape sequences count 0).
---@param s string
---@return integer
function statusline.width(s) end

--- s cut to `width` cells, ending in `ellipsis` (default "…") when cut.
---@param s string
---@param width integer
---@param ellipsis? string
---@return string
function statusline.truncate(s, width, ellipsis) end

--- Joins the non-empty parts with sep (default " | ").
---@param parts (string|false|nil)[]
---@param sep? string
---@return string
function statusline.join(parts, sep) end

--- Reads the payload, prints what fn(data, info) returns, exits 0, always
--- printing something (the last good line or the fallback on failure).
---@param fn fun(data: table, info: procmon.SessionInfo): string|string[]
---@param opts? procmon.StatuslineOptions
function statusline.run(fn, opts) end

return statusline
