---@meta procmon
-- LuaLS (lua-language-server) definitions of `require "procmon"`: completion
-- and type checks in an editor. Add this directory to "workspace.library"
-- (installed as <prefix>/share/procrun/types/library). spec/types_spec.lua
-- checks these names against the real module, so they cannot drift.

---@alias procmon.Signal string|integer a name ("TERM", "SIGINT", "KILL", "RTMIN+2") or a number

---@alias procmon.Reason
---| "exit"          # exited by itself
---| "signal"        # died of a signal procmon did not send
---| "timeout"       # killed by the `timeout` option
---| "idle_timeout"  # killed by the `idle_timeout` option
---| "max_buffer"    # killed when a captured stream passed `max_buffer`
---| "killed"        # p:kill or <close> asked it to end
---| "unknown"       # the exit status was taken by someone else (waitpid elsewhere)

---@alias procmon.Stdio
---| "pipe"     # captured into the Result (stdout, stderr: the default)
---| "inherit"  # procrun's own descriptor
---| "null"     # /dev/null (stdin: the default)
---| { file: string, append?: boolean }

---@class procmon.SpawnOptions
---@field cwd? string working directory
---@field env? table<string, string|false> merged onto the current environment; false removes a variable
---@field clear_env? boolean start from an empty environment (then `env` alone)
---@field shell? boolean `cmd` is a string run by /bin/sh -c
---@field stdin? procmon.Stdio a mode: "null" (default), "pipe" (p:write), "inherit", { file = path }
---@field input? string data written to the child's stdin, then closed (not with `stdin`)
---@field stdout? procmon.Stdio
---@field stderr? procmon.Stdio
---@field on_stdout? fun(chunk: string, more: true?) stream stdout (not captured then); with lines, `more` marks a piece of a line longer than max_line
---@field on_stderr? fun(chunk: string, more: true?) stream stderr (not captured then)
---@field lines? boolean with on_stdout/on_stderr: one call per line, without the newline
---@field max_line? integer with lines: longer lines come in pieces of this size, default 1 MiB (or max_buffer if smaller)
---@field timeout? number seconds of wall clock before `kill_signal`; 0 or math.huge = none
---@field idle_timeout? number seconds without output before `kill_signal`
---@field kill_signal? procmon.Signal default "TERM"
---@field kill_grace? number seconds between kill_signal and SIGKILL, default 2
---@field max_buffer? integer bytes kept per captured stream, default 64 MiB
---@field detached? boolean own session, outlives procrun, does not keep the loop alive
---@field on_exit? fun(result: procmon.Result) called when the Result is published
---@field name? string a label (Result, p.name, records)

---@class procmon.Result
---@field pid integer
---@field cmd string[]|string as spawned
---@field name? string
---@field code? integer exit code; nil when killed by a signal
---@field signal? string signal name ("KILL", "RTMIN+2") when killed by a signal
---@field ok boolean success: code == 0 and reason == "exit"
---@field stdout? string captured output; nil when not captured
---@field stderr? string captured output; nil when not captured
---@field reason procmon.Reason
---@field timed_out boolean reason is "timeout" or "idle_timeout"
---@field truncated boolean output was cut at max_buffer
---@field started_at number epoch seconds
---@field ended_at number epoch seconds
---@field duration number seconds

--- What pm.run_all puts in place of a job that could not start.
---@class procmon.RunAllFailure
---@field ok false
---@field cmd string[]|string
---@field error string the message
---@field error_code string the libuv error name ("ENOENT")

---@class procmon.RunAllOptions
---@field concurrency? integer jobs at once, default 8

--- A child process. `local p <close> = pm.spawn(...)` stops it at scope end.
---@class procmon.Process
---@field pid integer
---@field name? string
local Process = {}

--- Waits for the Result. With `timeout` (seconds): nil, msg, "ETIMEDOUT"
--- when it passes, and the process keeps running.
---@param timeout? number
---@return procmon.Result|nil result
---@return string? err
---@return string? code
function Process:wait(timeout) end

--- Signals the process group; true, or fail ("ESRCH" once it has exited).
---@param signal? procmon.Signal default "TERM"
---@return true|nil ok
---@return string? err
---@return string? code
function Process:kill(signal) end

--- With stdin = "pipe": writes what the pipe takes and queues the rest;
--- waits (yielding in a task) while 1 MiB is queued for a child that does
--- not read; in a plain callback then fails "EAGAIN" instead.
---@param data string
---@return true|nil ok
---@return string? err
---@return string? code "EPIPE" once the child is gone, "EAGAIN" (see above)
function Process:write(data) end

--- Sends EOF after the queued writes (idempotent).
function Process:close_stdin() end

--- Whether the child has not exited yet.
---@return boolean
function Process:running() end

--- The Result, or nil while running.
---@return procmon.Result|nil
function Process:result() end

--- A coroutine started by pm.task.
---@class procmon.Task
local Task = {}

--- Waits for the task; returns what its function returned.
---@return any ...
function Task:wait() end

--- Whether the task's function has returned (or raised).
---@return boolean
function Task:done() end

---@class procmon
local pm = {}

--- The version of procmon (project(VERSION)), e.g. "0.1.0".
---@type string
pm.version = ""

--- Starts `cmd` (an argv table, no shell; or a string with shell = true).
--- Fail: nil, msg, code ("spawn 'x': ENOENT: no such file or directory").
---@param cmd string[]|string
---@param opts? procmon.SpawnOptions
---@return procmon.Process|nil process
---@return string? err
---@return string? code
function pm.spawn(cmd, opts) end

--- spawn + wait.
---@param cmd string[]|string
---@param opts? procmon.SpawnOptions
---@return procmon.Result|nil result
---@return string? err
---@return string? code
function pm.run(cmd, opts) end

--- Runs {cmd, opts} jobs, at most `concurrency` at once; Results in input order.
---@param jobs { [1]: string[]|string, [2]: procmon.SpawnOptions? }[]
---@param opts? procmon.RunAllOptions
---@return (procmon.Result|procmon.RunAllFailure)[]
function pm.run_all(jobs, opts) end

--- This state's running children, newest first.
---@return procmon.Process[]
function pm.active() end

--- Runs `fn(...)` in a coroutine: blocking calls inside it yield to the loop.
---@param fn fun(...): ...
---@param ... any
---@return procmon.Task
function pm.task(fn, ...) end

--- Sleeps, letting the loop (and other tasks) run.
---@param seconds number
function pm.sleep(seconds) end

--- Runs the event loop until nothing is pending (procrun does it after the
--- main chunk). Raises inside a task.
function pm.loop() end

--- Wall clock, epoch seconds (float).
---@return number
function pm.time() end

--- Monotonic clock in seconds (float, arbitrary origin), for durations.
---@return number
function pm.clock() end

--- The stop signal procrun received ("TERM", "INT", "HUP"), or nil. Once
--- set, procmon's blocking and starting calls raise "interrupted by SIG...";
--- a wrapper that pcalls user code checks it and re-raises.
---@return string|nil
function pm.interrupted() end

--- The state directory in use (created if needed), or fail.
---@return string|nil dir
---@return string? err
---@return string? code
function pm.state_dir() end

--- The JSON codec (also require "procmon.json").
pm.json = require "procmon.json"

--- The file cache (also require "procmon.cache").
pm.cache = require "procmon.cache"

--- Parent/child metadata in PROCESS_* variables (also require "procmon.env").
pm.env = require "procmon.env"

--- Claude Code sessions (also require "procmon.session").
pm.session = require "procmon.session"

--- Claude Code hook commands (also require "procmon.hook").
pm.hook = require "procmon.hook"

--- Statusline helpers (also require "procmon.statusline").
pm.statusline = require "procmon.statusline"

--- Persisted process records: `pm.monitor{...}` (also require "procmon.monitor").
pm.monitor = require "procmon.monitor"

--- Monitor policies: restart, keyed (also require "procmon.policy").
pm.policy = require "procmon.policy"

return pm
