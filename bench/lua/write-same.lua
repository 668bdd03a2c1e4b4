-- wrk script: POST $BENCH_BODY to /v1/secret/data/$BENCH_PATH, so every request writes a new
-- version of the same secret.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

wrk.method = "POST"
wrk.path = "/v1/secret/data/" .. os.getenv("BENCH_PATH")
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["X-Vault-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"

done = report.done
