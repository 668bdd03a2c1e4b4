-- wrk script: POST $BENCH_BODY to a path no request used before, so every request creates a
-- new secret. Paths are bench/new/$BENCH_RUN/<thread>/<counter>; BENCH_RUN differs per run.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

local run = os.getenv("BENCH_RUN")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local counter = 0
local headers = {
  ["X-Vault-Token"] = os.getenv("BENCH_TOKEN"),
  ["Content-Type"] = "application/json",
}
local body = os.getenv("BENCH_BODY")

function request()
  counter = counter + 1
  local path = string.format("/v1/secret/data/bench/new/%s/%d/%d", run, thread_id, counter)
  return wrk.format("POST", path, headers, body)
end

done = report.done
