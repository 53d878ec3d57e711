--- procmon.statusline: helpers for a Claude Code statusLine command.
---
---   local sl = require "procmon.statusline"
---   sl.run(function(data, info)
---     return sl.paint("cyan", info.model_name or "?") .. " " .. sl.bar(info.context_usage)
---   end)
---
--- run always prints a line and exits 0: Claude Code blanks the row on a
--- non-zero exit or an empty output, and does not keep the last good text.
--- On bad input or an error in fn it logs one line to stderr and prints the
--- last good line of the session (kept in the cache) or a short fallback.

local pm = require "procmon"
local session = require "procmon.session"

local M = {}

local utf8_len, utf8_codepoint = utf8.len, utf8.codepoint
local floor, concat = math.floor, table.concat

-- {=== colours ===}

local function env_no_color()
  local v = os.getenv("NO_COLOR")
  return v ~= nil and v ~= ""
end

--- Whether paint emits ANSI colours: off when NO_COLOR is set (and not
--- empty), or after set_color(false).
M.color = not env_no_color()

--- Turns colours on or off (on is still overridden by NO_COLOR).
---@param on boolean
function M.set_color(on)
  M.color = on and not env_no_color() or false
end

M.codes = {
  reset = "0", bold = "1", dim = "2", italic = "3", underline = "4",
  red = "31", green = "32", yellow = "33", blue = "34", magenta = "35", cyan = "36",
  white = "37", gray = "90", grey = "90",
  bright_red = "91", bright_green = "92", bright_yellow = "93", bright_blue = "94",
  bright_magenta = "95", bright_cyan = "96",
}

--- text in a colour or style ("red", "bold", "gray"...; several as
--- "bold red"), followed by a reset. Plain text when colours are off.
---@param style string
---@param text string
---@return string
function M.paint(style, text)
  text = tostring(text)
  local seq = {}
  for word in tostring(style):gmatch("[%w_]+") do
    local c = M.codes[word]
    if not c then error(("bad argument #1 to 'paint' (unknown style '%s')"):format(word), 2) end
    seq[#seq + 1] = c
  end
  if not M.color then return text end
  return "\27[" .. concat(seq, ";") .. "m" .. text .. "\27[0m"
end

-- {=== numbers ===}

--- A human duration: "0s", "45s", "3m 20s", "1h 05m", "2d 4h".
---@param seconds number|nil
---@return string
function M.duration(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 then return "--" end
  local s = floor(seconds)
  if s < 60 then return s .. "s" end
  if s < 3600 then return ("%dm %02ds"):format(s // 60, s % 60) end
  if s < 86400 then return ("%dh %02dm"):format(s // 3600, s % 3600 // 60) end
  if s == math.huge then return "--" end
  return ("%dd %dh"):format(s // 86400, s % 86400 // 3600)
end

--- A percentage, rounded to `decimals` (default 0): "22%"; "--%" for nil.
---@param pct number|nil
---@param decimals? integer
---@return string
function M.percent(pct, decimals)
  if type(pct) ~= "number" or pct ~= pct then return "--%" end
  decimals = decimals or 0
  if decimals == 0 then return ("%d%%"):format(floor(pct + 0.5)) end
  return ("%." .. decimals .. "f%%"):format(pct)
end

--- The colour of a usage figure: green below 50, yellow below 80, red.
---@param pct number|nil
---@return string
function M.level(pct)
  if type(pct) ~= "number" then return "gray" end
  if pct < 50 then return "green" end
  if pct < 80 then return "yellow" end
  return "red"
end

--- A usage bar `width` cells wide (default 10): "███░░░░░░░", coloured by
--- level; all light for nil (unknown). opts.fill / opts.empty replace the
--- characters.
---@param pct number|nil
---@param width? integer
---@param opts? {fill?: string, empty?: string}
---@return string
function M.bar(pct, width, opts)
  width = width or 10
  opts = opts or {}
  local fill, empty = opts.fill or "█", opts.empty or "░"
  local n = 0
  if type(pct) == "number" and pct == pct then
    n = floor(math.max(0, math.min(100, pct)) * width / 100 + 0.5)
  end
  local bar = fill:rep(n)
  if n > 0 then bar = M.paint(M.level(pct), bar) end
  local rest = empty:rep(width - n)
  if width - n > 0 then rest = M.paint("gray", rest) end
  return bar .. rest
end

--- A token count: "950", "18k", "1.2M".
---@param n number|nil
---@return string
function M.tokens(n)
  if type(n) ~= "number" then return "--" end
  if n < 1000 then return tostring(floor(n)) end
  if n < 1e6 then return ("%dk"):format(floor(n / 1000 + 0.5)) end
  return (("%.1fM"):format(n / 1e6):gsub("%.0M$", "M"))
end

-- {=== text: UTF-8, display width, truncation ===}

-- Code points shown two cells wide (East Asian Wide and Fullwidth, emoji
-- presentation), as sorted {first, last} pairs.
local wide = {
  0x1100, 0x115F, 0x231A, 0x231B, 0x2329, 0x232A, 0x23E9, 0x23EC, 0x23F0, 0x23F0,
  0x23F3, 0x23F3, 0x25FD, 0x25FE, 0x2614, 0x2615, 0x2648, 0x2653, 0x267F, 0x267F,
  0x2693, 0x2693, 0x26A1, 0x26A1, 0x26AA, 0x26AB, 0x26BD, 0x26BE, 0x26C4, 0x26C5,
  0x26CE, 0x26CE, 0x26D4, 0x26D4, 0x26EA, 0x26EA, 0x26F2, 0x26F3, 0x26F5, 0x26F5,
  0x26FA, 0x26FA, 0x26FD, 0x26FD, 0x2705, 0x2705, 0x270A, 0x270B, 0x2728, 0x2728,
  0x274C, 0x274C, 0x274E, 0x274E, 0x2753, 0x2755, 0x2757, 0x2757, 0x2795, 0x2797,
  0x27B0, 0x27B0, 0x27BF, 0x27BF, 0x2B1B, 0x2B1C, 0x2B50, 0x2B50, 0x2B55, 0x2B55,
  0x2E80, 0x303E, 0x3041, 0x33FF, 0x3400, 0x4DBF, 0x4E00, 0x9FFF, 0xA000, 0xA4CF,
  0xA960, 0xA97F, 0xAC00, 0xD7A3, 0xF900, 0xFAFF, 0xFE10, 0xFE19, 0xFE30, 0xFE6F,
  0xFF00, 0xFF60, 0xFFE0, 0xFFE6, 0x16FE0, 0x16FE4, 0x17000, 0x18CFF, 0x1B000, 0x1B2FF,
  0x1F004, 0x1F004, 0x1F0CF, 0x1F0CF, 0x1F18E, 0x1F18E, 0x1F191, 0x1F19A,
  0x1F200, 0x1F202, 0x1F210, 0x1F23B, 0x1F240, 0x1F248, 0x1F250, 0x1F251,
  0x1F260, 0x1F265, 0x1F300, 0x1F320, 0x1F32D, 0x1F335, 0x1F337, 0x1F37C,
  0x1F37E, 0x1F393, 0x1F3A0, 0x1F3CA, 0x1F3CF, 0x1F3D3, 0x1F3E0, 0x1F3F0,
  0x1F3F4, 0x1F3F4, 0x1F3F8, 0x1F43E, 0x1F440, 0x1F440, 0x1F442, 0x1F4FC,
  0x1F4FF, 0x1F53D, 0x1F54B, 0x1F54E, 0x1F550, 0x1F567, 0x1F57A, 0x1F57A,
  0x1F595, 0x1F596, 0x1F5A4, 0x1F5A4, 0x1F5FB, 0x1F64F, 0x1F680, 0x1F6C5,
  0x1F6CC, 0x1F6CC, 0x1F6D0, 0x1F6D2, 0x1F6D5, 0x1F6D7, 0x1F6DC, 0x1F6DF,
  0x1F6EB, 0x1F6EC, 0x1F6F4, 0x1F6FC, 0x1F7E0, 0x1F7EB, 0x1F7F0, 0x1F7F0,
  0x1F90C, 0x1F93A, 0x1F93C, 0x1F945, 0x1F947, 0x1F9FF, 0x1FA70, 0x1FAFF,
  0x20000, 0x2FFFD, 0x30000, 0x3FFFD,
}

-- Code points of no width: combining marks, zero-width characters,
-- variation selectors.
local zero = {
  0x0300, 0x036F, 0x0483, 0x0489, 0x0591, 0x05BD, 0x0610, 0x061A, 0x064B, 0x065F,
  0x0E31, 0x0E31, 0x0E34, 0x0E3A, 0x0E47, 0x0E4E, 0x1AB0, 0x1AFF, 0x1DC0, 0x1DFF,
  0x200B, 0x200F, 0x2028, 0x202E, 0x2060, 0x2064, 0x20D0, 0x20FF, 0x302A, 0x302D,
  0x3099, 0x309A, 0xFE00, 0xFE0F, 0xFE20, 0xFE2F, 0xFEFF, 0xFEFF, 0xE0100, 0xE01EF,
}

local function in_ranges(t, cp)
  if cp < t[1] then return false end
  local lo, hi = 1, #t // 2
  while lo <= hi do
    local mid = (lo + hi) // 2
    if cp < t[2 * mid - 1] then hi = mid - 1
    elseif cp > t[2 * mid] then lo = mid + 1
    else return true end
  end
  return false
end

--- Cells a code point takes in a terminal: 0, 1 or 2.
---@param cp integer
---@return integer
function M.char_width(cp)
  if cp < 0x300 then return (cp < 32 or (cp >= 0x7F and cp < 0xA0)) and 0 or 1 end
  if in_ranges(zero, cp) then return 0 end
  if in_ranges(wide, cp) then return 2 end
  return 1
end

--- s with every invalid UTF-8 sequence (a stray byte, an overlong form, a
--- surrogate) replaced by U+FFFD.
---@param s string
---@return string
function M.valid_utf8(s)
  if utf8_len(s) then return s end
  local out, i = {}, 1
  while true do
    local n, bad = utf8_len(s, i)
    if n then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
    -- Skip the continuation bytes of the bad sequence: one U+FFFD for it.
    while i <= #s and s:byte(i) & 0xC0 == 0x80 do i = i + 1 end
    if i > #s then break end
  end
  return concat(out)
end

--- Text from a payload made safe for a terminal: invalid UTF-8 replaced
--- by U+FFFD, control characters (escape sequences included) removed,
--- so a file name cannot move the cursor or change colours.
---@param s any
---@return string
function M.clean(s)
  if type(s) ~= "string" then return s == nil and "" or tostring(s) end
  s = M.valid_utf8(s)
  if s:find("[%c\127]") or s:find("\194[\128-\159]") then
    s = s:gsub("\27%[[0-?]*[ -/]*[@-~]", ""):gsub("\27%][^\7\27]*\7", "")
      :gsub("[\0-\31\127]", ""):gsub("\194[\128-\159]", "")
  end
  return s
end

local CHAR = "^[\0-\127\194-\244][\128-\191]*"

-- The end of an ANSI escape sequence starting at i (CSI or OSC), or nil.
local function ansi_end(s, i)
  local _, e = s:find("^\27%[[0-?]*[ -/]*[@-~]", i)
  if e then return e end
  _, e = s:find("^\27%][^\7\27]*\7", i)
  if e then return e end
  _, e = s:find("^\27%][^\7\27]*\27\\", i)
  return e
end

-- The next piece of s at i: its end, its width, whether it is an escape.
local function piece(s, i)
  if s:byte(i) == 27 then
    local e = ansi_end(s, i)
    if e then return e, 0, true end
    return i, 0, false
  end
  local _, e = s:find(CHAR, i)
  if not e then return i, 1, false end  -- a stray continuation byte
  local ok, cp = pcall(utf8_codepoint, s, i)
  if not ok then return e, 1, false end
  return e, M.char_width(cp), false
end

--- Display width of s in terminal cells: ANSI escape sequences count 0,
--- wide (East Asian, emoji) characters 2, combining marks 0.
---@param s string
---@return integer
function M.width(s)
  local w, i, n = 0, 1, #s
  if not s:find("[\27\128-\255]") then return n end
  while i <= n do
    local e, cw = piece(s, i)
    w, i = w + cw, e + 1
  end
  return w
end

--- s cut to at most `width` cells, ending in `ellipsis` (default "…") when
--- cut. Never cuts a character or an escape sequence; a cut coloured
--- string ends with a reset.
---@param s string
---@param width integer
---@param ellipsis? string
---@return string
function M.truncate(s, width, ellipsis)
  if type(s) ~= "string" then error("bad argument #1 to 'truncate' (string expected, got " .. type(s) .. ")", 2) end
  if math.type(width) ~= "integer" or width < 0 then
    error("bad argument #2 to 'truncate' (non-negative integer expected)", 2)
  end
  if M.width(s) <= width then return s end
  ellipsis = ellipsis or "…"
  local ew = M.width(ellipsis)
  if ew > width then ellipsis, ew = "", 0 end
  local out, w, i, styled = {}, 0, 1, false
  while i <= #s do
    local e, cw, esc = piece(s, i)
    if esc then
      styled = true
    elseif w + cw > width - ew then
      break
    end
    out[#out + 1] = s:sub(i, e)
    w, i = w + cw, e + 1
  end
  out[#out + 1] = ellipsis
  if styled then out[#out + 1] = "\27[0m" end
  return concat(out)
end

--- Joins the non-empty parts with sep (default " | ").
---@param parts (string|false|nil)[]
---@param sep? string
---@return string
function M.join(parts, sep)
  local out = {}
  for i = 1, (parts.n or #parts) do
    local p = parts[i]
    if p and p ~= "" then out[#out + 1] = p end
  end
  return concat(out, sep or " | ")
end

-- {=== run ===}

M.fallback = "[statusline unavailable]"

local function log(name, msg)
  io.stderr:write(name, ": ", (tostring(msg):match("^[^\n]*")), "\n")
end

local function exit_with(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
  os.exit(0, true)  -- close the state: finalizers run (caches, monitor records)
end

-- The session id in raw bytes that did not decode (a truncated payload
-- still names its session), to find the session's last good line.
local function sniff_session(raw)
  local id = type(raw) == "string" and raw:match('"session_id"%s*:%s*"([%w%-_.]+)"')
  return id
end

local run_options = { timeout = true, max_bytes = true, input = true, fd = true,
  name = true, fallback = true, cache = true, color = true, width = true, keep = true }

local function check_run(fn, opts)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'run' (function expected, got " .. type(fn) .. ")", 3)
  end
  if opts == nil then return {} end
  if type(opts) ~= "table" then error("bad argument #2 to 'run' (table expected, got " .. type(opts) .. ")", 3) end
  for k in pairs(opts) do
    if not run_options[k] then error("bad argument #2 to 'run' (unknown option '" .. tostring(k) .. "')", 3) end
  end
  if opts.width ~= nil and (math.type(opts.width) ~= "integer" or opts.width < 1) then
    error("bad argument #2 to 'run' (option 'width': positive integer expected)", 3)
  end
  return opts
end

-- What fn returned as the text to print: a string or a list of lines.
local function as_text(v)
  if type(v) == "table" then
    for i = 1, #v do
      if type(v[i]) ~= "string" then return nil, "statusline function returned a non-string line" end
    end
    v = concat(v, "\n")
  end
  if type(v) ~= "string" then return nil, "statusline function returned " .. type(v) .. ", not a string" end
  if v == "" then return nil, "statusline function returned an empty line" end
  return v
end

local function fit(text, width)
  if not width then return text end
  local out = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do out[#out + 1] = M.truncate(line, width) end
  return concat(out, "\n")
end

local function open_cache(opts)
  if opts.cache then return opts.cache end
  local c = pm.cache.open()
  return c
end

local function last_key(id) return "procmon:statusline:" .. id end

-- The stored last good line: { line = "...", at = epoch seconds }.
local function stored(cache, id)
  local v = cache:get(last_key(id))
  if type(v) == "table" and type(v.line) == "string" and v.line ~= "" then return v end
  return nil
end

-- The last good line of session `id`, or the fallback.
local function last_good(opts, id)
  local cache = id and open_cache(opts)
  local v = cache and stored(cache, id)
  return v and v.line or opts.fallback or M.fallback
end

--- Seconds during which a changed line is not written again: a statusline
--- runs several times a second, and a line showing a clock changes each
--- time; the fallback may be this much older than the last render.
M.keep_every = 5

-- Keeps `line` as the session's last good line: written when it changed
-- and the stored one is more than keep_every seconds old.
local function remember(opts, id, line)
  local cache = open_cache(opts)
  if not cache then return end
  local v, now = stored(cache, id), pm.time()
  if v and (v.line == line or now - (tonumber(v.at) or 0) < M.keep_every) then return end
  cache:set(last_key(id), { line = line, at = now }, opts.keep or 86400)
end

--- Runs a statusline: reads the payload (as session.read), calls
--- fn(data, info) (info = session.info(data)), prints what it returns (a
--- string, or a list of lines) and exits 0. On bad input, an error in fn or
--- a bad return value: one line on stderr ("<name>: <message>"), then the
--- session's last good line (from the cache) or the fallback, and exit 0.
--- A stop signal (SIGINT/SIGTERM to procrun) is never swallowed.
--- Options: those of session.read, name (for messages, default
--- "statusline"), fallback (default "[statusline unavailable]"), cache (a
--- procmon.Cache for the last good line; default: the default cache),
--- color (false: no ANSI colours), width (cut each line to this many
--- cells), keep (seconds a last good line is kept, default 86400).
---@param fn fun(data: table, info: table): string|string[]
---@param opts? table
function M.run(fn, opts)
  opts = check_run(fn, opts)
  if opts.color == false then M.set_color(false) end
  local name = opts.name or "statusline"
  local raw, how, code = session._read_raw(session._check_read_opts({
    timeout = opts.timeout, max_bytes = opts.max_bytes, input = opts.input, fd = opts.fd }, "run"))
  local data, err
  if raw then data, err = session._parse(raw, how, opts.timeout or session.default_timeout)
  else err = (code == "EFBIG" or code == "ECANCELED") and how or "stdin: " .. tostring(how) end
  if not data then
    log(name, err)
    return exit_with(last_good(opts, sniff_session(raw)))
  end
  local id = data.session_id
  local ok, res = pcall(fn, data, session.info(data))
  if not ok then
    local hook = require "procmon.hook"
    if hook._interrupted(res) then error(res, 0) end
    log(name, res)
    return exit_with(last_good(opts, id))
  end
  local text, terr = as_text(res)
  if not text then
    log(name, terr)
    return exit_with(last_good(opts, id))
  end
  text = fit(text, opts.width)
  remember(opts, id, text)
  return exit_with(text)
end

return M
