-- wrk script: GET /v1/secret/data/$BENCH_PATH with the token in X-Vault-Token.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

wrk.method = "GET"
wrk.path = "/v1/secret/data/" .. os.getenv("BENCH_PATH")
wrk.headers["X-Vault-Token"] = os.getenv("BENCH_TOKEN")

done = report.done
