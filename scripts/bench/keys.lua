-- wrk script: GET /cache/NS/PREFIX<n> with n uniform in [FIRST, FIRST+COUNT).
local ns = os.getenv("KEYS_NS") or "zipf"
local prefix = os.getenv("KEYS_PREFIX") or "k"
local first = tonumber(os.getenv("KEYS_FIRST") or "0")
local count = tonumber(os.getenv("KEYS_COUNT") or "100")

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

function request()
  return wrk.format("GET", "/cache/" .. ns .. "/" .. prefix .. (first + math.random(0, count - 1)))
end
