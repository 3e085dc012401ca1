#!/usr/bin/env bash
# Login throughput at 32 concurrent keep-alive TLS clients (wrk) against the embedded
# stack with the default Argon2id parameters, next to the machine's limit measured in the
# same run: cores / time of one Argon2id verification (bench_password).
#   bench/login.sh [BUILD_DIR]   (default build/release; the clients share the machine)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
bin=$PWD/$build/bin
duration=${LOGIN_BENCH_SECONDS:-20}

stack_dir=$(mktemp -d -t licensing-bench.XXXXXX)
trap '"$bin/licensectl" dev down --dir "$stack_dir" >/dev/null 2>&1 || true; rm -rf "$stack_dir"' EXIT
"$bin/licensectl" dev up --dir "$stack_dir" >/dev/null
url=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gateway_url"])' "$stack_dir/stack.json")

password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
users=32
echo "== signing up $users users"
for i in $(seq 0 $((users - 1))); do
  "$bin/licensectl" --stack "$stack_dir/stack.json" --session "$stack_dir/session.json" \
    signup --username "bench-user-$i" --password-stdin <<<"$password" >/dev/null
done

# One user per request in turn: the per-account limiter admits at most its failure limit
# (5) of one account's logins at a time, and real clients do not log one account in 32
# times at once.
cat >"$stack_dir/login.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"username":"bench-user-%d","password":"$password"}', counter % $users)
  return wrk.format("POST", "/v1/sessions", {["Content-Type"] = "application/json"}, body)
end
LUA

echo "== wrk: 32 connections, ${duration} s"
wrk_output=$(wrk -t2 -c32 -d"${duration}s" --latency -s "$stack_dir/login.lua" "$url/v1/sessions")
echo "$wrk_output"
rate=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$wrk_output")
total=$(awk '/requests in/ { print $1 }' <<<"$wrk_output")
failed=$(awk '/Non-2xx or 3xx responses:/ { print $4 }' <<<"$wrk_output")
ok=$((total - ${failed:-0}))
success_rate=$(awk -v ok="$ok" -v d="$duration" 'BEGIN { printf "%.2f", ok / d }')

echo "== bench_password: one Argon2id verification, default parameters"
verify_ms=$("$bin/bench_password" --benchmark_filter=BM_Argon2idVerify --benchmark_format=json 2>/dev/null |
  /usr/bin/python3 -c 'import json,sys; b=json.load(sys.stdin)["benchmarks"][0]; print(b["real_time"])')
cores=$(nproc)
limit=$(awk -v c="$cores" -v ms="$verify_ms" 'BEGIN { printf "%.2f", c * 1000 / ms }')
ratio=$(awk -v r="$success_rate" -v l="$limit" 'BEGIN { printf "%.2f", r / l }')

echo
echo "cores:                 $cores"
echo "one verification:      ${verify_ms} ms"
echo "machine limit:         ${limit} logins/s (cores / verification time)"
echo "successful logins:     ${success_rate} logins/s (${ok} in ${duration} s; wrk total ${rate} req/s)"
echo "ratio (ours / limit):  ${ratio}"
