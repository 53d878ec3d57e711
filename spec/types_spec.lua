-- The LuaLS definitions in types/library (---@meta files) against the real
-- module, so that they cannot drift: every public name a module or object
-- exports is declared, and every declared name exists. The meta files are
-- read as text: `---@class NAME` opens a class, `---@field f` and
-- `function X.f(` / `function X:f(` / `X.f = ` (X bound by `local X = {}`
-- after the class line) declare its names.
local pm = require "procmon"
local H = require "helpers"

local lib = H.root .. "/types/library"

-- Declared names that may be absent from this build: they are on their way
-- (DESIGN.md, a branch not landed yet). Present, they are checked as usual.
local PLANNED = {
  -- e.g. SpawnOptions = { input = true }, while `input` was on its way
}

-- Submodules that are implementation, not API (documented in the README
-- where they matter): no types needed.
local INTERNAL = {
  ["procmon.api"] = true, ["procmon.cli"] = true, ["procmon.store"] = true,
  ["procmon.sys"] = true, ["procmon.input"] = true, ["procmon.core"] = true,
  ["procmon.mondir"] = true,
}

--- The meta files: "procmon.lua" and "procmon/<name>.lua".
local function meta_files()
  local files = { lib .. "/procmon.lua" }
  local ls = io.popen("ls " .. lib .. "/procmon/*.lua 2>/dev/null")
  for f in ls:lines() do files[#files + 1] = f end
  ls:close()
  return files
end

--- classes[name] = { fields = set, members = set, maybe_nil = set, file = path }
local function parse(classes, path)
  local current, var_class = nil, {}
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    local cname = line:match("^%-%-%-@class ([%w_.]+)")
    if cname then
      current = cname
      classes[cname] = classes[cname] or { fields = {}, members = {}, maybe_nil = {}, file = path }
      classes[cname].parent = line:match("^%-%-%-@class [%w_.]+: ([%w_.]+)")
    end
    local field = line:match("^%-%-%-@field ([%w_]+)")
    if field then
      assert(current, path .. ":" .. n .. ": @field outside a class")
      classes[current].fields[field] = true
    end
    local var = line:match("^local ([%w_]+) = {}")
    if var and current then var_class[var] = current end
    local v, name = line:match("^function ([%w_]+)[.:]([%w_]+)%(")
    if not v then v, name = line:match("^([%w_]+)%.([%w_]+) = ") end
    if v then
      local c = assert(var_class[v], path .. ":" .. n .. ": '" .. v .. "' is not bound to a class")
      classes[c].members[name] = true
      if line:match("= nil$") then classes[c].maybe_nil[name] = true end
    end
  end
end

local classes = {}
for _, f in ipairs(meta_files()) do parse(classes, f) end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

--- The public names of a table (not `_private`, not metamethods).
local function public(t)
  local names = {}
  for k in pairs(t) do
    if type(k) == "string" and not k:match("^_") then names[k] = true end
  end
  return names
end

--- Both directions between what is declared and what is real.
local function same_names(what, declared, real, maybe_nil)
  local planned = PLANNED[what] or {}
  for _, name in ipairs(sorted_keys(real)) do
    assert(declared[name], ("%s.%s exists but types/library does not declare it"):format(what, name))
  end
  for _, name in ipairs(sorted_keys(declared)) do
    assert(real[name] or planned[name] or (maybe_nil and maybe_nil[name]),
           ("types/library declares %s.%s, which does not exist"):format(what, name))
  end
end

local function class(name)
  return assert(classes[name], "types/library has no ---@class " .. name)
end

--- A module class: its members are the module table's public keys.
local function check_module(name)
  local c = class(name)
  local mod = require(name)
  local real = public(mod)
  -- Lazily loaded fields (pm.cache...) appear once indexed.
  for member in pairs(c.members) do
    if mod[member] ~= nil then real[member] = true end
  end
  same_names(name, c.members, real, c.maybe_nil)
end

describe("the LuaLS type definitions", function()
  after_each(H.assert_no_live_handles)

  it("are meta files that Lua can load", function()
    for _, f in ipairs(meta_files()) do
      local src = H.read_file(f)
      assert.matches("^%-%-%-@meta procmon", src, 1)
      assert(load(src, "@" .. f, "t"))
    end
  end)

  it("declare every public submodule, each in its own meta file", function()
    for _, name in ipairs(sorted_keys(package.preload)) do
      if name:match("^procmon%.") and not INTERNAL[name] then
        local c = class(name)
        assert.are.equal(lib .. "/" .. name:gsub("%.", "/") .. ".lua", c.file)
        local short = name:match("^procmon%.(.*)")
        assert.is_true(classes.procmon.members[short], "pm." .. short .. " in procmon.lua")
      end
    end
  end)

  for _, name in ipairs({ "procmon", "procmon.json", "procmon.cache", "procmon.env",
                          "procmon.session", "procmon.hook", "procmon.statusline",
                          "procmon.monitor", "procmon.policy" }) do
    it("name what " .. name .. " exports, and nothing else", function() check_module(name) end)
  end

  it("name the methods and fields of a Process", function()
    local c = class("procmon.Process")
    local p = assert(pm.spawn(H.cmd("sleep", "10"), { name = "t" }))
    finally(function() p:kill("KILL"); p:wait() end)
    local real = public(require("procmon.core")._Process)
    same_names("Process", c.members, real)
    for field in pairs(c.fields) do assert.is_not_nil(p[field], "p." .. field) end
    for method in pairs(c.members) do assert.is_function(p[method], "p:" .. method) end
  end)

  it("name the methods of a Task", function()
    local t = pm.task(function() end)
    same_names("Task", class("procmon.Task").members, public(getmetatable(t).__index))
  end)

  it("name the methods and fields of a Cache", function()
    local dir = H.tmpdir()
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local cache <close> = assert(pm.cache.open(dir .. "/c"))
    local c = class("procmon.Cache")
    same_names("Cache", c.members, public(getmetatable(cache).__index))
    for field in pairs(c.fields) do assert.is_not_nil(cache[field], "cache." .. field) end
  end)

  it("name the methods and fields of a SessionTracker", function()
    local dir = H.tmpdir()
    finally(function() os.execute("rm -rf '" .. dir .. "'") end)
    local tracker = assert(pm.session.tracker({ dir = dir .. "/c" }))
    local c = class("procmon.SessionTracker")
    same_names("SessionTracker", c.members, public(getmetatable(tracker).__index))
    for field in pairs(c.fields) do assert.is_not_nil(tracker[field], "tracker." .. field) end
  end)

  if package.preload["procmon.monitor"] then
    it("name the methods and fields of a Monitor and a MonitoredProcess, and a Record's fields", function()
      local dir = H.tmpdir()
      finally(function() os.execute("rm -rf '" .. dir .. "'") end)
      local mon = assert(pm.monitor { dir = dir .. "/m" })
      local c = class("procmon.Monitor")
      same_names("Monitor", c.members, public(getmetatable(mon).__index))
      for field in pairs(c.fields) do assert.is_not_nil(mon[field], "mon." .. field) end
      local job = assert(mon:spawn(H.cmd("echo", "hi"), { name = "t" }))
      local r = job:wait()
      c = class("procmon.MonitoredProcess")
      same_names("MonitoredProcess", c.members, public(getmetatable(job).__index))
      for field in pairs(c.fields) do assert.is_not_nil(job[field], "job." .. field) end
      local seen = {}
      for _, rec in ipairs({ job.record, assert(mon:get(job.id)) }) do
        for k in pairs(rec) do seen[k] = true end
      end
      local declared = class("procmon.Record").fields
      for _, k in ipairs(sorted_keys(seen)) do assert(declared[k], "Record." .. k .. " is not declared") end
      assert.is_true(r.ok)
    end)
  end

  it("name exactly the options spawn accepts (src/pm_process.c)", function()
    local src = H.read_file(H.root .. "/src/pm_process.c")
    local list = assert(src:match("spawn_options%[%] = {(.-)NULL"), "spawn_options[] in pm_process.c")
    local real = {}
    for opt in list:gmatch('"([%w_]+)"') do real[opt] = true end
    same_names("SpawnOptions", class("procmon.SpawnOptions").fields, real)
    -- And spawn knows each of them (a bad value, never an unknown option).
    for opt in pairs(real) do
      local ok, err = pcall(pm.spawn, { "true" }, { [opt] = coroutine.create(print) })
      assert(ok or not tostring(err):find("unknown option", 1, true), opt)
    end
  end)

  it("name exactly the options every other function accepts (the code's own tables)", function()
    -- { file, the table of option names in it, the class declaring them,
    --   whether the class's parent's fields count too }
    local tables = {
      { "api.lua", "run_all_options", "procmon.RunAllOptions" },
      { "cache.lua", "open_options", "procmon.CacheOptions" },
      { "monitor.lua", "MON_OPTS", "procmon.MonitorOptions" },
      { "monitor.lua", "MON_SPAWN_OPTS", "procmon.MonitorSpawnOptions" },
      { "session.lua", "read_options", "procmon.ReadOptions" },
      { "session.lua", "tracker_options", "procmon.TrackerOptions" },
      { "hook.lua", "run_options", "procmon.HookRunOptions", true },
      { "statusline.lua", "run_options", "procmon.StatuslineOptions", true },
      { "policy.lua", "RESTART_OPTIONS", "procmon.RestartOptions" },
      { "policy.lua", "KEYED_OPTIONS", "procmon.KeyedOptions" },
    }
    for _, t in ipairs(tables) do
      local src = H.read_file(H.root .. "/lua/procmon/" .. t[1])
      local list = assert(src:match("\nlocal " .. t[2] .. " = (%b{})"), t[2] .. " in " .. t[1])
      local real = {}
      for opt in list:gmatch("([%w_]+) = true") do real[opt] = true end
      local c, declared = class(t[3]), {}
      for f in pairs(c.fields) do declared[f] = true end
      if t[4] then for f in pairs(class(c.parent).fields) do declared[f] = true end end
      same_names(t[3], declared, real)
    end
  end)

  it("name the fields of a Result, and of a job run_all could not start", function()
    local seen = {}
    local function add(r) for k in pairs(r) do seen[k] = true end end
    add(assert(pm.run(H.cmd("echo", "hi"), { name = "n" })))
    add(assert(pm.run({ "sh", "-c", "kill -KILL $$" })))  -- code nil, signal "KILL"
    same_names("Result", class("procmon.Result").fields, seen)
    local rs = pm.run_all({ { { "/nonexistent/procmon-types" } } })
    same_names("RunAllFailure", class("procmon.RunAllFailure").fields, public(rs[1]))
  end)
end)
