-- Distinct small saves: each request saves a new dictionary entry
-- (POST /dictionary/{id}/versions), ids unique per thread and request.
-- Each thread's number is the global `tid`, set by setup() in that
-- thread's own Lua state: a local of the same name here would hide it
-- (it did once: every thread sent the same ids, so that half the saves
-- were second saves of one entry, and not distinct). Answers other than
-- 201 Created are counted and reported by done().
local n = 0
local nthreads = 0
local threads = {}
local run = os.time()
not_created = 0 -- global: done() reads it with thread:get

setup = function(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

request = function()
  n = n + 1
  local id = string.format("w%d-%d-%d", run, tid, n)
  local body = string.format('{"content":{"senses":["sense %d"]},"word":"%s","provider":"bench"}', n, id)
  return wrk.format("POST", "/dictionary/" .. id .. "/versions",
                    {["Content-Type"] = "application/json"}, body)
end

response = function(status, headers, body)
  if status ~= 201 then
    not_created = not_created + 1
  end
end

done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + (t:get("not_created") or 0)
  end
  io.write(string.format("not created %d\n", total))
end
