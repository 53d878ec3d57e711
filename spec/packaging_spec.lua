-- Packaging: the one version number, the man page, the shell completions
-- and the install rules (PREFIX and DESTDIR at install time). Under
-- `make check-packaging` (PM_CHECK_PACKAGING=1, after `make deb`) also the
-- .deb (lintian, apt-get install and remove on this machine) and the
-- rockspec (luarocks make into a temporary tree): slow, and the .deb
-- needs root, so the plain suite leaves them out.
local pm = require "procmon"
local H = require "helpers"

local root = H.root

--- pm.run of `bash -c script` (the completion needs bash; Debian's sh is
--- dash); a generous timeout, so that a hang fails.
local function sh(script, opts)
  opts = opts or {}
  opts.timeout = opts.timeout or 600
  return assert(pm.run({ "bash", "-c", script }, opts))
end

local q = H.q

local function exists(path) return os.execute("test -e " .. q(path)) == true end

local function project_version()
  return (H.read_file(root .. "/CMakeLists.txt"):match("project%(procrun VERSION ([%d.]+)"))
end

--- The subcommands procrun really has (the CLI's dispatch table).
local function subcommands()
  local names = {}
  for name in pairs(require("procmon.cli").commands) do names[#names + 1] = name end
  table.sort(names)
  return names
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function sanitized_build()
  local f = io.open(H.build .. "/CMakeCache.txt")
  local s = f and f:read("a") or ""
  if f then f:close() end
  return s:find("PM_SANITIZE:BOOL=ON", 1, true) ~= nil
end

describe("the version", function()
  local version = project_version()

  it("is project(VERSION), shown by procrun --version with the Lua and libuv versions", function()
    assert.is_string(version)
    local r = assert(pm.run({ H.procrun, "--version" }))
    assert.are.equal(0, r.code)
    assert.are.equal("", r.stderr)
    assert.matches("^procrun " .. version:gsub("%.", "%%.") .. " %(Lua 5%.4%.%d+, libuv 1%.%d+%.%d+%)\n$",
                   r.stdout)
  end)

  it("names the one rockspec, whose version field agrees", function()
    local r = sh("cd " .. q(root) .. " && ls *.rockspec")
    assert.are.same({ "procmon-" .. version .. "-1.rockspec" }, lines(r.stdout))
    local spec = {}
    assert(loadfile(root .. "/procmon-" .. version .. "-1.rockspec", "t", spec))()
    assert.are.equal("procmon", spec.package)
    assert.are.equal(version .. "-1", spec.version)
    assert.are.equal("cmake", spec.build.type)
  end)

  it("reaches the installed man page's header", function()
    local page = H.read_file(H.build .. "/procrun.1")
    assert.matches('\n%.TH PROCRUN 1 %S+ "procrun ' .. version:gsub("%.", "%%.") .. '"', page)
  end)
end)

describe("procrun --help and procrun help", function()
  local function procrun(...)
    return assert(pm.run({ H.procrun, ... }, { timeout = 30 }))
  end

  it("--help names every subcommand, on stdout", function()
    local r = procrun("--help")
    assert.are.equal(0, r.code)
    assert.are.equal("", r.stderr)
    for _, name in ipairs(subcommands()) do
      assert.truthy(r.stdout:find("procrun " .. name, 1, true), name)
    end
  end)

  it("help NAME and NAME --help print the subcommand's usage", function()
    local usage = require("procmon.cli").usage
    for _, name in ipairs(subcommands()) do
      local r = procrun("help", name)
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(usage[name] .. "\n", r.stdout)
      assert.matches("^usage: procrun " .. name, r.stdout)
      if name ~= "help" then
        assert.are.equal(r.stdout, procrun(name, "--help").stdout)
        assert.are.equal(r.stdout, procrun(name, "-h").stdout)
      end
    end
    local r = procrun("help")
    assert.are.equal(0, r.code)
    assert.matches("subcommands: ", r.stdout)
  end)

  it("a usage error exits 1 (never 2, Claude Code's 'block') with the usage on stderr", function()
    for _, args in ipairs({ {}, { "-e" }, { "--" } }) do
      local r = procrun(table.unpack(args))
      assert.are.equal(1, r.code, table.concat(args, " "))
      assert.are.equal("", r.stdout)
      assert.matches("^usage: procrun", r.stderr)
    end
  end)

  it("help of an unknown subcommand fails on stderr with 1", function()
    local r = procrun("help", "nope")
    assert.are.equal(1, r.code)
    assert.are.equal("", r.stdout)
    assert.are.equal("procrun help: no subcommand 'nope'\n", r.stderr)
  end)

  it("every flag a subcommand's usage shows is in the man page", function()
    local page = H.read_file(root .. "/doc/procrun.1")
    local usage = require("procmon.cli").usage
    for _, name in ipairs(subcommands()) do
      for flag in usage[name]:gmatch("%f[%w-](%-%-?%a[%w-]*)") do
        assert.truthy(page:find((flag:gsub("%-", "\\-")), 1, true), name .. " " .. flag)
      end
    end
  end)
end)

describe("the man page", function()
  local page = H.read_file(root .. "/doc/procrun.1")

  it("renders without a warning (groff -man -ww -z)", function()
    for _, file in ipairs({ root .. "/doc/procrun.1", H.build .. "/procrun.1" }) do
      local r = sh("groff -man -ww -z " .. q(file))
      assert.are.equal(0, r.code)
      assert.are.equal("", r.stderr)
    end
  end)

  it("has the sections a man page needs", function()
    for _, section in ipairs({ "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS",
                               "EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO" }) do
      assert.truthy(page:find("\n.SH " .. section .. "\n", 1, true), section)
    end
  end)

  it("documents every subcommand, in the synopsis and its own entry", function()
    for _, name in ipairs(subcommands()) do
      assert.truthy(page:find("\n.B " .. name .. "\n", 1, true), name .. " in the synopsis")
      assert.truthy(page:find("\n.TP\n.B " .. name .. "[ \n]"), name .. " in SUBCOMMANDS")
    end
  end)

  it("documents every flag that procrun --help shows", function()
    local usage = assert(pm.run({ H.procrun, "--help" })).stdout
    local seen = 0
    for flag in usage:gmatch("%f[%w-](%-%-?%a[%w-]*)") do
      seen = seen + 1
      local roff = flag:gsub("%-", "\\-")
      assert.truthy(page:find(roff, 1, true), flag)
    end
    assert.is_true(seen >= 3)
  end)

  it("documents the environment variables", function()
    for _, var in ipairs({ "PROCMON_STATE_DIR", "XDG_RUNTIME_DIR", "NO_COLOR", "PROCMON_NO_PIDFD" }) do
      assert.truthy(page:find("\n.B " .. var .. "\n", 1, true), var)
    end
  end)

  it("documents every variable the code reads (but PATH), in ENVIRONMENT", function()
    local env = assert(page:match("\n%.SH ENVIRONMENT\n(.-)\n%.SH "))
    local files = sh("ls " .. q(root) .. "/lua/procmon/*.lua " .. q(root) .. "/src/*.c").stdout
    local seen = 0
    for file in files:gmatch("[^\n]+") do
      for var in H.read_file(file):gmatch('getenv%("([%u%d_]+)"%)') do
        seen = seen + 1
        if var ~= "PATH" then
          assert.truthy(env:find("%f[%w_]" .. var .. "%f[^%w_]"), var .. " (read in " .. file .. ")")
        end
      end
    end
    assert.is_true(seen >= 5)
  end)
end)

describe("the bash completion", function()
  local script = root .. "/completions/procrun.bash"

  --- COMPREPLY for the command line `words` (the last one being completed),
  --- run in `dir`.
  local function complete(words, dir)
    local quoted = {}
    for i, w in ipairs(words) do quoted[i] = q(w) end
    local r = sh(("cd %s && source %s && COMP_WORDS=(%s) && COMP_CWORD=%d && _procrun && "
                  .. "printf '%%s\\n' \"${COMPREPLY[@]}\""):format(
                  q(dir or root), q(script), table.concat(quoted, " "), #words - 1),
                 { timeout = 30 })
    assert.are.equal(0, r.code, r.stderr)
    return lines(r.stdout)
  end

  local tmp
  before_each(function() tmp = H.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. q(tmp)) end)

  it("loads and registers for procrun", function()
    local r = sh("source " .. q(script) .. " && complete -p procrun")
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("", r.stderr)
    assert.are.equal("complete -F _procrun procrun\n", r.stdout)
  end)

  it("completes the subcommands, and a subcommand from its prefix", function()
    local got = set_of(complete({ "procrun", "" }, tmp))
    for _, name in ipairs(subcommands()) do
      assert.is_true(got[name], name)
      assert.are.same({ name }, complete({ "procrun", name }, tmp))
    end
    assert.are.same({ "gc" }, complete({ "procrun", "g" }, tmp))
  end)

  it("completes Lua scripts and directories as the first word", function()
    assert(io.open(tmp .. "/build.lua", "w")):close()
    assert(io.open(tmp .. "/notes.txt", "w")):close()
    os.execute("mkdir " .. q(tmp .. "/bdir"))
    assert.are.same({ "bdir", "build.lua" }, (function()
      local t = complete({ "procrun", "b" }, tmp)
      table.sort(t)
      return t
    end)())
  end)

  it("completes the flags of ps and logs", function()
    assert.are.same({ "--all", "--json", "--dir" }, complete({ "procrun", "ps", "--" }))
    assert.are.same({ "-f", "--follow", "-n", "--dir" }, complete({ "procrun", "logs", "-" }))
  end)

  it("completes kill and logs with the record ids of procrun ps --json", function()
    -- A procrun whose `ps --json` answers like the monitor (running records
    -- only; with --all the finished ones too); anything else is the real one.
    local stub = tmp .. "/procrun-stub"
    local f = assert(io.open(stub, "w"))
    f:write(([[#!/bin/sh
if [ "$1" = ps ]; then
  case " $* " in
    *" --all "*) printf '[{"id":"build-1a","pid":10},{"id":"lint-2b","status":"completed"}]\n' ;;
    *) printf '[{"id":"build-1a","pid":10,"cmd":["make"]}]\n' ;;
  esac
  exit 0
fi
exec %s "$@"
]]):format(q(H.procrun)))
    f:close()
    os.execute("chmod +x " .. q(stub))
    assert.are.same({ "build-1a" }, complete({ stub, "kill", "" }))
    assert.are.same({ "build-1a" }, complete({ stub, "kill", "b" }))
    local ids = complete({ stub, "logs", "" })
    table.sort(ids)
    assert.are.same({ "build-1a", "lint-2b" }, ids)
    assert.are.same({ "lint-2b" }, complete({ stub, "logs", "-f", "l" }))
    assert.are.same({ "TERM" }, complete({ stub, "kill", "build-1a", "T" }))
    assert.are.same({ "TERM" }, complete({ stub, "kill", "--dir", "/x", "build-1a", "SIGT" }))
    assert.are.same({}, complete({ stub, "logs", "-n", "5", "build-1a", "" }))
  end)

  if package.preload["procmon.monitor"] then
    it("completes kill with the id of a job the monitor runs", function()
      local mon = assert(pm.monitor())
      local job = assert(mon:spawn(H.cmd("sleep", "30"), { name = "completion" }))
      finally(function() job:kill("KILL"); job:wait() end)
      local ids = complete({ H.procrun, "kill", "" })
      assert.is_true(set_of(ids)[job.id], job.id)
      assert.is_true(set_of(complete({ H.procrun, "logs", job.id:sub(1, 3) }))[job.id])
    end)
  end

  it("passes --dir on to procrun ps for the ids", function()
    local stub = tmp .. "/procrun-dir"
    local f = assert(io.open(stub, "w"))
    f:write("#!/bin/sh\nif [ \"$1\" = ps ]; then\n"
      .. "  case \" $* \" in *\" --dir /mon \"*) echo '[{\"id\":\"in-dir\"}]' ;; *) echo '[]' ;; esac\n"
      .. "  exit 0\nfi\nexec " .. q(H.procrun) .. ' "$@"\n')
    f:close()
    os.execute("chmod +x " .. q(stub))
    assert.are.same({}, complete({ stub, "kill", "" }))
    assert.are.same({ "in-dir" }, complete({ stub, "kill", "--dir", "/mon", "" }))
    assert.are.same({ "in-dir" }, complete({ stub, "logs", "--dir", "/mon", "-f", "" }))
  end)

  it("completes nothing for kill when procrun lists no record", function()
    local stub = tmp .. "/procrun-empty"
    local f = assert(io.open(stub, "w"))
    f:write("#!/bin/sh\n[ \"$1\" = ps ] && { echo '[]'; exit 0; }\nexec " .. q(H.procrun) .. ' "$@"\n')
    f:close()
    os.execute("chmod +x " .. q(stub))
    assert.are.same({}, complete({ stub, "kill", "" }))
  end)
end)

describe("the zsh completion", function()
  it("parses, and compinit registers it for procrun", function()
    local r = assert(pm.run({ "zsh", "-f", "-c", [[
      fpath=(completions $fpath)
      autoload -Uz compinit && compinit -u -D
      print -r -- $_comps[procrun]
    ]] }, { cwd = root, timeout = 60, env = { HOME = H.tmpdir() } }))
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("_procrun\n", r.stdout)
  end)

  it("asks procrun ps for the ids of the --dir given on the line", function()
    -- _procrun_ids out of its completion context: the procrun being
    -- completed is a function that answers ps with its own arguments as
    -- the one id, and _describe prints what it is given
    local r = assert(pm.run({ "zsh", "-f", "-c", [=[
      _files() { : }
      source completions/_procrun
      fake() { if [[ $1 == ps ]]; then print -r -- "[{\"id\":\"$*\"}]"; else "$PROCRUN" "$@"; fi }
      _describe() { print -rl -- "${(@P)4}" }
      typeset -A opt_args
      words=(fake kill)
      opt_args[--dir]='~/mon'
      _procrun_ids --all
      opt_args[--dir]="'/x/g[1] (e:touch /tmp/pwned:)'"
      _procrun_ids
    ]=] }, { cwd = root, timeout = 60, env = { HOME = "/home/x", PROCRUN = H.procrun } }))
    assert.are.equal(0, r.code, r.stderr)
    -- the second one literally: no glob, no glob qualifier run
    assert.are.equal("ps --json --dir /home/x/mon --all\nps --json --dir /x/g[1] (e:touch /tmp/pwned:)\n",
      r.stdout)
  end)
end)

describe("make install", function()
  local stage, manifest, saved

  before_each(function()
    stage = H.tmpdir()
    manifest = H.build .. "/install_manifest.txt"
    local f = io.open(manifest, "rb")
    saved = f and f:read("a")
    if f then f:close() end
  end)

  after_each(function()
    os.execute("rm -rf " .. q(stage))
    if saved then
      local f = assert(io.open(manifest, "wb"))
      f:write(saved)
      f:close()
    else
      os.remove(manifest)
    end
  end)

  it("honours PREFIX and DESTDIR at install time, and make uninstall removes it all", function()
    local make = ("make -s -C %s BUILD=%s PREFIX=/opt/pm-prefix DESTDIR=%s "):format(
      q(root), q(H.build), q(stage))
    local r = sh(make .. "install")
    assert.are.equal(0, r.code, r.stderr)
    local p = stage .. "/opt/pm-prefix"
    local files = {
      p .. "/bin/procrun",
      p .. "/lib/lua/5.4/procmon.so",
      p .. "/share/man/man1/procrun.1",
      p .. "/share/bash-completion/completions/procrun",
      p .. "/share/zsh/site-functions/_procrun",
      p .. "/share/procrun/types/library/procmon.lua",
    }
    for _, file in ipairs(files) do assert.is_true(exists(file), file) end
    assert.is_false(exists(stage .. "/usr"))
    -- The manifest names what was installed, as paths below DESTDIR.
    local listed = set_of(lines(H.read_file(manifest)))
    for _, file in ipairs(files) do assert.is_true(listed[file:sub(#stage + 1)], file) end

    r = assert(pm.run({ p .. "/bin/procrun", "--version" }))
    assert.are.equal(0, r.code)
    assert.matches("^procrun " .. project_version():gsub("%.", "%%."), r.stdout)
    if not sanitized_build() then  -- an ASan procmon.so cannot load into lua5.4
      r = assert(pm.run({ "lua5.4", "-e",
        'local pm = require "procmon"; io.write(package.searchpath("procmon", package.cpath), " ",'
        .. ' pm.run({"echo", "hi"}).stdout)' }, { env = { LUA_CPATH = p .. "/lib/lua/5.4/?.so" } }))
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(p .. "/lib/lua/5.4/procmon.so hi\n", r.stdout)
    end

    r = sh(make .. "uninstall")
    assert.are.equal(0, r.code, r.stderr)
    for _, file in ipairs(files) do assert.is_false(exists(file), file) end
    assert.is_false(exists(p .. "/share/procrun"))
  end)
end)

if os.getenv("PM_CHECK_PACKAGING") ~= "1" then
  describe("the .deb and the rockspec", function()
    pending("run by make check-packaging (PM_CHECK_PACKAGING=1)")
  end)
  return
end

describe("the .deb (make deb)", function()
  local version = project_version()
  local arch = sh("dpkg --print-architecture").stdout:gsub("%s", "")
  local multiarch = sh("dpkg-architecture -qDEB_HOST_MULTIARCH").stdout:gsub("%s", "")
  local deb = ("%s/build-deb/procrun_%s_%s.deb"):format(root, version, arch)
  local apt_env = { DEBIAN_FRONTEND = "noninteractive", LUA_CPATH = false, LUA_PATH = false }

  local function installed()
    local r = sh("dpkg-query -W -f='${Status}' procrun 2>/dev/null")
    return r.stdout
  end

  it("is built, with computed Depends and the version of project(VERSION)", function()
    assert.is_true(exists(deb), deb)
    local r = sh("dpkg-deb -f " .. q(deb) .. " Package Version Architecture Depends")
    assert.matches("Package: procrun\n", r.stdout)
    assert.matches("Version: " .. version:gsub("%.", "%%.") .. "\n", r.stdout)
    -- dpkg-shlibdeps found the libraries procrun and procmon.so link.
    assert.matches("Depends: [^\n]*libc6 %(>= [%d.]+%)", r.stdout)
    assert.matches("Depends: [^\n]*libuv1 %(>= [%d.]+%)", r.stdout)
    local files = sh("dpkg-deb -c " .. q(deb)).stdout
    for _, path in ipairs({ "./usr/bin/procrun", "./usr/lib/" .. multiarch .. "/lua/5.4/procmon.so",
                            "./usr/share/man/man1/procrun.1.gz",
                            "./usr/share/bash-completion/completions/procrun",
                            "./usr/share/zsh/vendor-completions/_procrun",
                            "./usr/share/doc/procrun/copyright" }) do
      assert.truthy(files:find(" " .. path .. "\n", 1, true), path)
    end
  end)

  it("passes lintian without an error or a warning", function()
    local r = sh("lintian --fail-on error,warning " .. q(deb) .. " 2>&1")
    assert.are.equal(0, r.code, r.stdout)
    assert.is_nil(r.stdout:match("\n?[EW]: [^\n]*"), r.stdout)
  end)

  it("installs with apt-get, works, and apt-get remove leaves nothing behind", function()
    assert.is_nil(installed():match("ok installed"), "procrun is installed already: remove it first")
    local paths
    finally(function()
      if installed():match("ok installed") then sh("apt-get remove -y -qq procrun", { env = apt_env }) end
    end)
    local r = sh("apt-get install -y -qq " .. q(deb) .. " 2>&1", { env = apt_env })
    assert.are.equal(0, r.code, r.stdout)
    assert.matches("install ok installed", installed())
    paths = lines(sh("dpkg -L procrun").stdout)

    r = assert(pm.run({ "/usr/bin/procrun", "--version" }, { cwd = "/" }))
    assert.are.equal(0, r.code)
    assert.matches("^procrun " .. version:gsub("%.", "%%."), r.stdout)
    -- A stock lua5.4 finds the module on its default cpath.
    r = assert(pm.run({ "lua5.4", "-e", 'local pm = require "procmon"; '
      .. 'io.write(package.searchpath("procmon", package.cpath), " ", pm.run({"echo", "ok"}).stdout)' },
      { cwd = "/", env = apt_env }))
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("/usr/lib/" .. multiarch .. "/lua/5.4/procmon.so ok\n", r.stdout)
    r = sh("source /usr/share/bash-completion/completions/procrun && complete -p procrun")
    assert.are.equal("complete -F _procrun procrun\n", r.stdout)
    r = sh("zcat /usr/share/man/man1/procrun.1.gz | groff -man -ww -z")
    assert.are.equal("", r.stderr)

    r = sh("apt-get remove -y -qq procrun 2>&1", { env = apt_env })
    assert.are.equal(0, r.code, r.stdout)
    -- Gone from dpkg's database (no config-files state: it has no conffiles).
    assert.are.equal("", (installed():gsub("unknown ok not%-installed", "")))
    for _, path in ipairs(paths) do
      -- Directories shared with other packages stay; ours must go.
      local shared = sh("test -d " .. q(path) .. " && dpkg -S " .. q(path)).code == 0
      assert.is_true(shared or not exists(path), path)
    end
    assert.is_false(exists("/usr/share/procrun"))
    assert.is_false(exists("/usr/share/doc/procrun"))
  end)
end)

describe("the rockspec (luarocks make)", function()
  it("builds and installs procmon into a tree, where require finds it", function()
    local tree = H.tmpdir()
    finally(function() os.execute("rm -rf " .. q(tree)) end)
    local rockspec = "procmon-" .. project_version() .. "-1.rockspec"
    local env = { LUA_CPATH = false, LUA_PATH = false }
    local r = sh(("luarocks lint %s && luarocks --lua-version 5.4 --tree %s make %s 2>&1"):format(
      rockspec, q(tree), rockspec), { cwd = root, env = env })
    assert.are.equal(0, r.code, r.stdout)
    r = sh("luarocks --lua-version 5.4 --tree " .. q(tree) .. " path", { env = env })
    r = sh(r.stdout .. '\nlua5.4 -e \'local pm = require "procmon"; io.write(package.searchpath('
      .. '"procmon", package.cpath), " ", pm.run({"echo", "ok"}).stdout)\'', { cwd = "/", env = env })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(tree .. "/lib/lua/5.4/procmon.so ok\n", r.stdout)
    r = assert(pm.run({ tree .. "/bin/procrun", "--version" }))
    assert.are.equal(0, r.code)
  end)
end)
