# bench/lib.sh — helpers shared by the bench/run scenarios: peers, targets, measured runs and
# the parsing of each tool's output. Sourced by bench/run, never run on its own.
#
# Every measured run writes one line "tool requests cpu_seconds wall_seconds" to $RESULTS, so a
# scenario's table is computed from what the tools printed, nothing asserted.

LS_BIN=${LS_BIN:-"$ROOT/target/release/loadspec"}
TARGET_CORE=${TARGET_CORE:-0}
GEN_CORE=${GEN_CORE:-1}

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# A free loopback port, chosen by the kernel.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Install wrk, hey, ab, nginx, Prometheus, jq and oha if missing; build loadspec in release mode.
ensure_peers() {
    local missing=()
    for t in wrk hey ab nginx prometheus jq; do command -v "$t" >/dev/null || missing+=("$t"); done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} from Debian"
        apt-get install -y wrk hey apache2-utils nginx-light prometheus jq >&2
    fi
    if ! command -v oha >/dev/null; then
        if cargo install --list | grep -q '^oha '; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            log "installing oha with cargo install (a few minutes)"
            cargo install --locked oha >&2
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
    if [[ -z ${BENCH_NO_BUILD:-} ]]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release --bin loadspec >&2)
    fi
    [[ -x $LS_BIN ]] || die "no $LS_BIN"
    # 10,000 VUs need 10,000 sockets in the generator and in the target.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
}

# start_nginx [tls] — nginx serving a small static file on one core; sets NGINX_URL. With
# "tls" it serves HTTPS/1.1 only (wrk speaks nothing else; TLS 1.2 and 1.3, session cache and
# tickets on), also answers POST /upload with 200 (nginx reads and discards the body), sets
# NGINX_TLS_BASE (https://127.0.0.1:PORT) and writes a self-signed certificate to $WORK/tls/cert.pem (a
# throw-away key made by the openssl CLI for this run).
start_nginx() {
    local tls=${1:-} d="$WORK/nginx${1:+-$1}" port listen http_tls="" server_tls="" scheme=http
    mkdir -p "$d/www" "$d/tmp"
    # The worker runs as nobody: it must reach the file.
    chmod 755 "$WORK" "$d" "$d/www"
    # 100-byte body: a "small response", like an API's JSON answer.
    printf '%099d\n' 0 >"$d/www/small.txt"
    port=$(free_port)
    listen="127.0.0.1:$port"
    if [[ -n $tls ]]; then
        mkdir -p "$WORK/tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
            -addext basicConstraints=critical,CA:FALSE \
            -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
        listen="$listen ssl"
        # TLS 1.3 as well: nginx 1.22 (Debian 12) offers only up to 1.2 unless told, while
        # nginx since 1.23.4 and most servers today negotiate 1.3.
        http_tls="ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $WORK/tls/cert.pem;
    ssl_certificate_key $WORK/tls/key.pem;
    ssl_session_cache shared:TLS:10m;
    ssl_session_tickets on;
    client_max_body_size 8m;"
        server_tls='location = /upload { return 200 "ok\n"; }'
        scheme=https
    fi
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    $http_tls
    server {
        listen $listen backlog=4096;
        root $d/www;
        location / { }
        $server_tls
    }
}
EOF
    taskset -c "$TARGET_CORE" nginx -c "$d/nginx.conf" -p "$d" 2>>"$d/error.log" &
    NGINX_PID=$!
    NGINX_TLS_BASE="$scheme://127.0.0.1:$port"
    NGINX_URL="$NGINX_TLS_BASE/small.txt"
    for _ in $(seq 50); do curl -fsk -o /dev/null "$NGINX_URL" && return 0; sleep 0.1; done
    die "nginx did not start: $(cat "$d/error.log")"
}

# Start demo-target with the given extra flags on the target core; sets DT_ADDR and DT_PID.
start_demo_target() {
    local out="$WORK/demo-target.$RANDOM.out"
    taskset -c "$TARGET_CORE" "$LS_BIN" demo-target --listen 127.0.0.1:0 --cpu-ms 0 \
        --mem-per-request 0 --base-memory 0 "$@" >"$out" 2>"$out.err" &
    DT_PID=$!
    for _ in $(seq 100); do
        DT_ADDR=$(sed -n 's/^listening on //p' "$out")
        [[ -n $DT_ADDR ]] && return 0
        sleep 0.05
    done
    die "demo-target did not start: $(cat "$out.err")"
}

stop_pid() { [[ -n ${1:-} ]] && kill "$1" 2>/dev/null && wait "$1" 2>/dev/null; return 0; }

cleanup() {
    stop_pid "${PROM_PID:-}"
    [[ -n ${SLEEPERS[*]:-} ]] && kill "${SLEEPERS[@]}" 2>/dev/null
    stop_pid "${DT_PID:-}"
    stop_pid "${NGINX_PID:-}"
    [[ -n ${KEEP_WORK:-} ]] || rm -rf "$WORK"
}

# measure NAME OUTFILE CMD... — run CMD pinned to the generator core; record user+sys seconds
# and wall seconds in OUTFILE.time ("cpu wall").
measure() {
    local name=$1 out=$2
    shift 2
    /usr/bin/time -f '%U %S %e' -o "$out.time" taskset -c "$GEN_CORE" "$@" >"$out" 2>"$out.err" || true
    # The last line: /usr/bin/time puts "Command exited with non-zero status N" before the
    # figures when the tool fails.
    tail -n 1 "$out.time" | awk '{printf "%.3f %.3f\n", $1+$2, $3}' >"$out.cpu"
}

# Requests counted from each tool's own output (responses of any status).
requests_wrk() { awk '/requests in/ {print $1}' "$1"; }
requests_hey() { awk '/Status code distribution/ {on=1; next} on && /\[[0-9]+\]/ {n+=$2} END {print n+0}' "$1"; }
requests_oha() { jq '[.statusCodeDistribution[]] | add // 0' "$1"; }
requests_loadspec() { awk '/requests\.\.\./ {n+=$2} END {print n+0}' "$1"; }

# A loadspec plan file for one closed-model scenario. Args: file url vus duration [extra request toml]
loadspec_plan() {
    local file=$1 url=$2 vus=$3 dur=$4 extra=${5:-}
    cat >"$file" <<EOF
[server]
listen = "127.0.0.1:0"
[lifecycle]
on_finish = "exit"
[reports]
enabled = false
[log]
progress_interval = "1h"
[containers]
source = "none"
[target]
timeout = "60s"
${TARGET_EXTRA:-}
[[scenarios]]
name = "bench"
executor = "constant-vus"
vus = $vus
duration = "${dur}s"
[[scenarios.requests]]
name = "r"
method = "${METHOD:-GET}"
url = "$url"
$extra
EOF
}

# record TOOL OUT PARSER — append "tool requests cpu wall" for a finished run to $RESULTS.
record() {
    local tool=$1 out=$2 parser=$3 n cpu wall
    n=$("$parser" "$out")
    read -r cpu wall <"$out.cpu"
    echo "$tool ${n:-0} $cpu $wall $(loadavg)" >>"$RESULTS"
    log "$tool: $n requests, ${cpu}s CPU, ${wall}s wall, load $(loadavg)"
}

# table DURATION — medians per tool from $RESULTS, with ratios to the reference tool ($REF,
# default wrk) computed per round (same interleaved round), then the median and the range
# (min–max over the rounds) shown, so no figure claims more than its spread allows.
table() {
    python3 - "$RESULTS" "$1" "${REF:-wrk}" <<'EOF'
import sys, statistics as st
path, dur, ref = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = [l.split() for l in open(path) if l.strip()]
tools, runs = [], {}
for t, n, cpu, wall, load in rows:
    if t not in runs: tools.append(t); runs[t] = []
    runs[t].append((int(n), float(cpu), float(wall), float(load)))
def per(t):
    return [(n / dur, n / max(cpu, 1e-9), load) for n, cpu, wall, load in runs[t]]
print(f"| tool | requests/s | requests per CPU-second | ratio to {ref} (req/CPU-s), median (range) | ratio to {ref} (req/s), median (range) | load avg (range) |")
print("|---|---:|---:|---:|---:|---:|")
for t in tools:
    p = per(t)
    rps = st.median(x[0] for x in p); eff = st.median(x[1] for x in p)
    loads = [x[2] for x in p]
    if ref in runs:
        r = per(ref); k = min(len(r), len(p))
        def spread(j):
            v = [p[i][j] / r[i][j] for i in range(k) if r[i][j] > 0]
            return f"{st.median(v):.2f}× ({min(v):.2f}–{max(v):.2f})" if v else "–"
        ratios = f"{spread(1)} | {spread(0)}"
    else:
        ratios = "– | –"
    print(f"| {t} | {rps:,.0f} | {eff:,.0f} | {ratios} | {st.median(loads):.2f} ({min(loads):.2f}–{max(loads):.2f}) |")
EOF
}
