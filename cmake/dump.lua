-- Precompiles one embedded module: lua5.4 dump.lua SRC OUT NAME writes the
-- bytecode of SRC, with "@[procmon]/NAME.lua" as its chunk name (the name
-- the embedded source had), debug info kept for line numbers in tracebacks.
local src, out, name = ...
local f = assert(io.open(src, "rb"))
local code = f:read("a")
f:close()
local fn = assert(load(code, "@[procmon]/" .. name .. ".lua"))
local o = assert(io.open(out, "wb"))
o:write(string.dump(fn))
o:close()
