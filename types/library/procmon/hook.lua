---@meta procmon.hook
-- LuaLS definitions of `require "procmon.hook"` (also `pm.hook`): Claude
-- Code hook commands. Checked by spec/types_spec.lua.

--- hook.output / hook.respond: the answer, in procmon's names.
---@class procmon.HookAnswer
---@field event? string default: the event hook.read returned
---@field decision? "allow"|"deny"|"ask"|"defer"|"block"
---@field reason? string
---@field context? string additionalContext for Claude
---@field title? string sessionTitle
---@field updated_input? table PreToolUse: the replacement tool_input
---@field permissions? table PermissionRequest: updatedPermissions
---@field continue? boolean
---@field stop_reason? string
---@field system_message? string
---@field suppress_output? boolean

---@class procmon.HookRunOptions: procmon.ReadOptions
---@field name? string for messages (default: the script's file name)
---@field on_error? "continue"|"block" exit 1 (default) or 2 on bad input or an error

---@class procmon.hook
local hook = {}

--- The event read last by hook.read (respond's default event).
---@type table|nil
hook.event = nil

--- Claude Code's cap on strings in hook output (10,000 characters).
---@type integer
hook.max_string = 10000

--- Reads the hook event from stdin (as session.read); it must have a
--- hook_event_name. nil, err (one line) when unusable.
---@param opts? procmon.ReadOptions
---@return table|nil event
---@return string? err
---@return string? code
function hook.read(opts) end

--- The JSON object (a Lua table) that answers the event, in Claude Code's
--- shape. Raises on a field the event does not take.
---@param t procmon.HookAnswer
---@return table
function hook.output(t) end

--- Prints hook.output(t) as one line of JSON and exits 0.
---@param t procmon.HookAnswer
function hook.respond(t) end

--- Blocks the action: the reason on stderr, exit 2.
---@param reason string
function hook.block(reason) end

--- Reads the event, calls fn(event) and answers with what it returns (nil:
--- no output, exit 0). Errors: one line on stderr and exit 1 (or 2 with
--- on_error = "block").
---@param fn fun(event: table): procmon.HookAnswer|nil
---@param opts? procmon.HookRunOptions
function hook.run(fn, opts) end

return hook
