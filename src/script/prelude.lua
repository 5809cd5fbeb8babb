-- Loaded once per VM, before the globals are made read-only. Makes pcall/xpcall that
-- cannot swallow a SCRIPT KILL (and catch redis.call errors as their message, as Redis's
-- pcall does), removes what a script must not reach, and returns the runner the server
-- calls: runner(f[, keys, argv]) runs f and returns ok, result-or-error-table.
local type, tostring, error, rawget, rawset, setmetatable, ipairs, next =
  type, tostring, error, rawget, rawset, setmetatable, ipairs, next
local raw_pcall, raw_xpcall, raw_loadstring = pcall, xpcall, loadstring
local byte = string.byte
local raw_getmetatable, raw_rawget, raw_pairs, raw_collectgarbage = getmetatable, rawget, pairs, collectgarbage
local killed, where, errmsg = __killed, __where, __errmsg
local G = _G
rawset(G, '__killed', nil)
rawset(G, '__where', nil)
rawset(G, '__errmsg', nil)

local function handler(e)
  if type(e) == 'userdata' then
    e = {err = errmsg(e)}
  elseif type(e) ~= 'table' then
    e = {err = 'ERR ' .. tostring(e)}
  end
  if rawget(e, 'err') == nil then
    rawset(e, 'err', 'ERR unknown error')
  end
  if rawget(e, 'source') == nil then
    local source, line = where()
    if source then
      rawset(e, 'source', source)
      rawset(e, 'line', line)
    end
  end
  return e
end

local function rethrow(ok, ...)
  if not ok and killed() then
    error((...), 0)
  end
  return ok, ...
end
-- As Redis's pcall: an error table (from redis.call) is caught as its message.
local function caught(ok, e, ...)
  if not ok then
    if killed() then
      error(e, 0)
    end
    if type(e) == 'table' and type(rawget(e, 'err')) == 'string' then
      e = rawget(e, 'err')
    elseif type(e) == 'userdata' then
      e = errmsg(e, true)
    end
    return false, e
  end
  return ok, e, ...
end
rawset(G, 'pcall', function(...) return caught(raw_pcall(...)) end)
rawset(G, 'xpcall', function(f, h) return rethrow(raw_xpcall(f, h)) end)
rawset(G, 'loadstring', function(s, name)
  if type(s) == 'string' and byte(s, 1) == 27 then
    return nil, 'loading binary chunks is not allowed'
  end
  return raw_loadstring(s, name)
end)
-- Not in Redis 7's sandbox: file access, module loading, and what reaches or outlives a
-- run's environment (setfenv/getfenv replace or expose a thread's globals; newproxy's
-- __gc finalizers would run later, inside another client's script).
for _, name in ipairs({'dofile', 'loadfile', 'load', 'print', 'module', 'require', 'package',
                       'setfenv', 'getfenv', 'newproxy', 'gcinfo'}) do
  rawset(G, name, nil)
end
-- The collector may be asked about or run, not stopped or retuned for later scripts.
rawset(G, 'collectgarbage', function(opt, arg)
  if opt == nil or opt == 'collect' or opt == 'count' or opt == 'step' then
    return raw_collectgarbage(opt, arg)
  end
  error("collectgarbage option '" .. tostring(opt) .. "' is not allowed", 2)
end)

-- Read-only globals and libraries, as in Redis 7.
local protected = {}
local function readonly()
  error('Attempt to modify a readonly table', 2)
end
for _, name in ipairs({'string', 'math', 'table', 'coroutine', 'redis', 'cjson', 'bit', 'cmsgpack', 'struct'}) do
  local real = rawget(G, name)
  if real ~= nil then
    local proxy = setmetatable({}, {__index = real, __newindex = readonly, __metatable = false})
    protected[proxy] = true
    rawset(G, name, proxy)
  end
end
-- Strings' methods go through the read-only proxy too, and their metatable is sealed
-- (else `getmetatable('').__index` is the real string table, shared by every script).
do
  local smt = raw_getmetatable('')
  smt.__index = rawget(G, 'string')
  smt.__metatable = false
end
protected[G] = true
local raw_rawset = rawset
G.rawset = function(t, k, v)
  if protected[t] then
    readonly()
  end
  return raw_rawset(t, k, v)
end
-- The globals move to a table behind an empty _G, so that assigning one (even nil) is
-- refused like creating one, as Redis 7's read-only _G refuses it; KEYS and ARGV, set
-- on _G itself for each run, shadow it.
local globals = {}
for name, value in next, G do
  globals[name] = value
end
for name in next, globals do
  raw_rawset(G, name, nil)
end
setmetatable(globals, {
  __index = function(_, name)
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end,
  __metatable = false,
})
setmetatable(G, {__index = globals, __newindex = readonly, __metatable = false})
-- rawget and pairs on _G see the globals, as on Redis's read-only _G.
globals.rawget = function(t, k)
  if t == G then
    return raw_rawget(globals, k)
  end
  return raw_rawget(t, k)
end
globals.pairs = function(t)
  if t == G then
    return raw_pairs(globals)
  end
  return raw_pairs(t)
end

return function(f, as_function, keys, argv)
  local ok, res
  if as_function then
    ok, res = raw_xpcall(function() return f(keys, argv) end, handler)
  else
    ok, res = raw_xpcall(f, handler)
  end
  return ok, res
end
