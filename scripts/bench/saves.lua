-- Distinct small saves: each request saves a new dictionary entry
-- (POST /dictionary/{id}/versions), ids unique per thread and request.
local n = 0
local tid = 0
local run = os.time()
setup = function(thread)
  tid = tid + 1
  thread:set("tid", tid)
end
request = function()
  n = n + 1
  local id = string.format("w%d-%d-%d", run, tid, n)
  local body = string.format('{"content":{"senses":["sense %d"]},"word":"%s","provider":"bench"}', n, id)
  return wrk.format("POST", "/dictionary/" .. id .. "/versions",
                    {["Content-Type"] = "application/json"}, body)
end
