-- The public procmon table, built on the C functions in procmon.core.
local core = require "procmon.core"
local M = core
return M
