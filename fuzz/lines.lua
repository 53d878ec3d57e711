-- What the line callback got, against the lines of the whole input:
-- joined pieces give each line (without "\n" or "\r\n"), in order; only the
-- last piece of a line comes without the "more" flag; no piece is longer
-- than max_line; in a valid UTF-8 line no piece starts inside a character
-- (when max_line is at least 4 bytes).
local got = {}
local M = {}

function M.collect(piece, more)
  got[#got + 1] = { piece, more == true }
end

local function expected(s)
  local lines = {}
  for line, nl in s:gmatch("([^\n]*)(\n?)") do
    if nl == "" and line == "" then break end  -- gmatch's empty match at the end
    lines[#lines + 1] = nl == "\n" and line:gsub("\r$", "") or line:gsub("\r$", "")
    if nl == "" then break end
  end
  return lines
end

function M.verify(s, max)
  local pieces = got
  got = {}
  local want = expected(s)
  local i, line, parts = 0, {}, {}
  local function fail(what)
    error(("%s (max_line %d, input %q)"):format(what, max, s))
  end
  for _, p in ipairs(pieces) do
    if #p[1] > max then fail("a piece longer than max_line") end
    line[#line + 1] = p[1]
    parts[#parts + 1] = p[1]
    if not p[2] then
      i = i + 1
      local whole = table.concat(line)
      if whole ~= want[i] then
        fail(("line %d is %q, want %q"):format(i, whole, tostring(want[i])))
      end
      -- (a piece of fewer than 4 bytes cannot always hold a character)
      if #parts > 1 and max >= 4 and utf8.len(whole) then
        for k = 2, #parts do
          local b = parts[k]:byte(1)
          if b and b >= 0x80 and b < 0xC0 then fail("a piece starts inside a UTF-8 character") end
        end
      end
      line, parts = {}, {}
    end
  end
  if #line > 0 then fail("pieces without their last one") end
  if i ~= #want then fail(("%d lines, want %d"):format(i, #want)) end
end

return M
