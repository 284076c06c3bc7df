-- wrk script: GET the paths listed in the file PATHS_FILE (one a line),
-- each wrk thread cycling through all of them from its own starting point.
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do
  paths[#paths + 1] = line
end
local at = 0

function init(args)
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
  at = math.random(1, #paths)
end

function request()
  at = at % #paths + 1
  return wrk.format("GET", paths[at])
end
