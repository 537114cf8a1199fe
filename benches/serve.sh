#!/usr/bin/env bash
# `ezimg serve` against Debian's nginx serving the same `ezimg build` output statically on
# 127.0.0.1, in the same run: ApacheBench (ab, apache2-utils) fetches the same files from both
# (a bundle's sha256 line and the bundle), one connection per request, and the script prints
# requests/s, p99 latency and the server's CPU time per request for each, and the ratio. Both
# log every request to a file.
#
# Usage: benches/serve.sh [REQUESTS] [CONCURRENCY]   (default 2000 and 16; every ab run is also
#        capped at 20 s). EZIMG_BIN=PATH uses that binary instead of a release build.
# Installs nginx and apache2-utils (apt-get) when missing. Timings are wall clock: on a shared
# host they move with its load, and client and servers share its cores.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
requests=${1:-2000}
conc=${2:-16}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

need=()
command -v ab >/dev/null || need+=(apache2-utils)
PATH=$PATH:/usr/sbin command -v nginx >/dev/null || need+=(nginx)
if [ "${#need[@]}" -gt 0 ]; then
    echo "serve bench: installing ${need[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo=sudo; fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
nginx_bin=$(PATH=$PATH:/usr/sbin command -v nginx)

if [ -z "${EZIMG_BIN:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
    EZIMG_BIN=${CARGO_TARGET_DIR:-$root/target}/release/ezimg
fi
cp "$EZIMG_BIN" "$work/ezimg"
ezimg=$work/ezimg

export EZIMG_CACHE_DIR=$work/cache EZIMG_ALLOW_INCOMPLETE=1
"$ezimg" init --out "$work/cluster.toml" >/dev/null 2>&1
"$ezimg" build -c "$work/cluster.toml" --all --out "$work/out" >/dev/null 2>&1

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ezimg serve: port 0, the bound address read from its first stdout line.
mkfifo "$work/serve.out"
"$ezimg" serve -c "$work/cluster.toml" --from "$work/out" --listen 127.0.0.1:0 \
    >"$work/serve.out" 2>"$work/ezimg-access.log" &
ezimg_pid=$!
pids+=("$ezimg_pid")
read -r line <"$work/serve.out"
ezimg_url=${line#listening on }

# nginx: the same tree under the same /out/ paths, logging every request like ezimg does.
nport=$(free_port)
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
    access_log $work/nginx/logs/access.log;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    sendfile on;
    server {
        listen 127.0.0.1:$nport;
        location /out/ { alias $work/out/; }
    }
}
EOF
chmod -R a+rX "$work"
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
pids+=("$nginx_pid")
nginx_url=http://127.0.0.1:$nport
for _ in $(seq 50); do
    curl -fsS -o /dev/null "$nginx_url/out/slb/ezimg-slb-bundle.tar.gz.sha256" 2>/dev/null && break
    sleep 0.1
done

# CPU time (clock ticks) used so far by process $1 and its children's threads (nginx's workers).
ticks() {
    local p sum=0
    for p in "$1" $(pgrep -P "$1" || true); do
        sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$sum"
}
hz=$(getconf CLK_TCK)

# ab SERVER_URL PATH PID: prints "<requests/s> <p99 ms> <requests done> <server CPU µs per
# request>", failing on any failed or non-2xx request. CPU per request is the steadier figure
# on a shared host: it does not count time spent waiting for a core.
bench() {
    local out t0 t1
    t0=$(ticks "$3")
    out=$(ab -q -t 20 -n "$requests" -c "$conc" "$1$2" 2>&1)
    t1=$(ticks "$3")
    if ! grep -q '^Failed requests: *0$' <<<"$out" || grep -q '^Non-2xx responses' <<<"$out"; then
        echo "ab against $1$2 failed:" >&2
        echo "$out" >&2
        exit 1
    fi
    local rps p99 count
    rps=$(awk '/^Requests per second:/ { print $4 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    count=$(awk '/^Complete requests:/ { print $3 }' <<<"$out")
    echo "$rps $p99 $count $(( (t1 - t0) * 1000000 / hz / count ))"
}

printf '%-52s %10s %7s %7s %10s %7s %7s %7s\n' "file ($requests requests, $conc at once)" \
    "ezimg r/s" "p99 ms" "CPU µs" "nginx r/s" "p99 ms" "CPU µs" "ratio"
for path in /out/slb/ezimg-slb-bundle.tar.gz.sha256 /out/slb/ezimg-slb-bundle.tar.gz; do
    size=$(stat -c %s "$work${path}")
    read -r e_rps e_p99 e_n e_cpu < <(bench "$ezimg_url" "$path" "$ezimg_pid")
    read -r n_rps n_p99 n_n n_cpu < <(bench "$nginx_url" "$path" "$nginx_pid")
    ratio=$(awk -v a="$e_rps" -v b="$n_rps" 'BEGIN { printf "%.2fx", a / b }')
    printf '%-52s %10s %7s %7s %10s %7s %7s %7s\n' "${path##*/} ($size B; $e_n/$n_n done)" \
        "$e_rps" "$e_p99" "$e_cpu" "$n_rps" "$n_p99" "$n_cpu" "$ratio"
done
echo "ratio: ezimg's requests/s over nginx's (higher is better for ezimg); CPU µs: the server's"
echo "CPU time per request (user + system, nginx's master and workers)"
