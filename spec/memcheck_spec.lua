-- procrun under valgrind's memcheck, on the ways out of a script: no
-- invalid access, and nothing definitely lost whichever way it ends.
-- (`make test-valgrind` runs whole spec files under valgrind; these are
-- the exits a spec file cannot take itself.) Skipped without valgrind, for
-- sanitized builds, which valgrind cannot run, and under lua5.4 (the same
-- procrun runs would only repeat).
local H = require "helpers"

local q, sh = H.q, H.sh

local usable = H.lua == H.procrun and select(2, sh("command -v valgrind")) == 0
  and not sh("ldd " .. q(H.procrun)):find("libasan", 1, true)

-- Exit status of `procrun -e chunk` under memcheck (99: an error found).
local function memcheck(chunk)
  return sh(("PROCMON_NO_PIDFD=1 valgrind -q --leak-check=full --errors-for-leak-kinds=definite "
    .. "--error-exitcode=99 %s -e %s"):format(q(H.procrun), q(chunk)))
end

describe("memcheck", function()
  local check = usable and it or pending
  for _, c in ipairs({
    { "os.exit(code, true) closes the state and frees the allocator's pool",
      "os.exit(7, true)", 7 },
    { "os.exit(true, true)", "os.exit(true, true)", 0 },
    { "os.exit(code) without closing", "os.exit(5)", 5 },
    { "an uncaught error after a spawn", [[
      local pm = require "procmon"
      local r = pm.run({ "sh", "-c", "echo out; echo err >&2" })
      assert(r.stdout == "out\n" and r.stderr == "err\n")
      error("boom")]], 1 },
    { "a child still running at os.exit(0, true)", [[
      local pm = require "procmon"
      pm.spawn({ "sh", "-c", "sleep 30" })
      os.exit(0, true)]], 0 },
  }) do
    check(c[1], function()
      local out, code = memcheck(c[2])
      assert.are.equal(c[3], code, out)
      assert.is_nil(out:find("definitely lost", 1, true), out)
    end)
  end
end)
