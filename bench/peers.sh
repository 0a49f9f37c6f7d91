# bench/peers.sh — `bench/run peers`: loadspec beside the scenario frameworks a k6 user would
# weigh, Goose (Rust, bench/peers/goose) and Locust (FastHttpUser, bench/peers/locustfile.py).
# Sourced by bench/run. Every tool sends the same bodies: nginx logs $request_length for each
# request and the table shows the per-tool median, so a difference is visible.
#
# Knobs: PEER_USERS (50), PEER_ROUNDS (5), PEER_DURATION (10 s), PEER_MEM_USERS ("1000 5000"),
# PEER_KINDS ("get upload"), PEER_NO_MEMORY=1 (skip memory per user).

GOOSE_BIN=${GOOSE_BIN:-$ROOT/bench/peers/goose/target/release/goose-bench}
LOCUST_VENV=${LOCUST_VENV:-$ROOT/target/bench-locust-venv}

ensure_frameworks() {
    if [[ ! -x $GOOSE_BIN ]]; then
        log "building the Goose peer (bench/peers/goose, a few minutes)"
        cargo build --release --manifest-path "$ROOT/bench/peers/goose/Cargo.toml" >&2
    fi
    if [[ ! -x $LOCUST_VENV/bin/locust ]]; then
        log "installing Locust into $LOCUST_VENV"
        python3 -m venv "$LOCUST_VENV"
        "$LOCUST_VENV/bin/pip" install -q locust >&2
    fi
}

# nginx for the peers: a 100 B file for GET, and an upload location that reads the whole body
# and answers 200; the access log records each request's length.
start_peer_nginx() {
    local d="$WORK/pnginx" port
    mkdir -p "$d/www" "$d/tmp"
    chmod 755 "$WORK" "$d" "$d/www"
    printf '%099d\n' 0 >"$d/www/small.txt"
    port=$(free_port)
    cat >"$d/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 20000; }
http {
    # \$request_length is what nginx has read when it logs: for the upload, which it answers
    # before reading the body, that is the head; \$content_length is the body each tool declared
    # (a tool that sent fewer bytes would stall its keep-alive connection and fail).
    log_format len '\$request_method \$request_length \$status \$content_length';
    access_log $d/access.log len buffer=256k;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 10m;
    client_body_buffer_size 1m;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $d/www;
        location / { }
        # The whole body is read before the answer (echo-less upload sink).
        location /api/v1/ai-images { client_body_in_single_buffer on; return 200 "ok\n"; }
        location /slow { return 200 "ok\n"; }
    }
}
CONF
    taskset -c "$TARGET_CORE" nginx -c "$d/nginx.conf" -p "$d" 2>>"$d/error.log" &
    NGINX_PID=$!
    PEER_HOST="http://127.0.0.1:$port"
    PEER_LOG="$d/access.log"
    for _ in $(seq 50); do curl -fs -o /dev/null "$PEER_HOST/small.txt" && return 0; sleep 0.1; done
    die "nginx did not start: $(cat "$d/error.log")"
}

requests_goose() { awk '/Aggregated/ && !done { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9,]+$/) { gsub(",", "", $i); print $i; done = 1; exit } }' "$1"; }
# Locust's CSV: Type,Name,Request Count,... with a final "Aggregated" row.
requests_locust() { awk -F, '$2 ~ /Aggregated/ {print $3; exit}' "$1.csv_stats.csv"; }

# Median head length and declared body length per tool, from nginx's log between two marks.
request_lengths() {
    local tool=$1 from=$2
    tail -n +"$from" "$PEER_LOG" | awk '{print $2, ($4 == "-" ? 0 : $4)}' | python3 -c '
import sys, statistics as st
rows = [tuple(map(int, l.split())) for l in sys.stdin if l.strip()]
if rows:
    print(f"{sys.argv[1]}: {len(rows)} requests logged, median request head {st.median_low(r[0] for r in rows)} B, "
          f"body (Content-Length) {st.median_low(r[1] for r in rows)} B (min {min(r[1] for r in rows)}, max {max(r[1] for r in rows)})")
' "$tool"
}

peer_round() {
    local kind=$1 r=$2 users=$3 dur=$4 path=$5 plan=$6 o="$WORK/peer.$kind.$r" mark
    mark=$(($(wc -l <"$PEER_LOG" 2>/dev/null || echo 0) + 1))
    measure loadspec "$o.ls" "$LS_BIN" run --config "$plan"
    record loadspec "$o.ls" requests_loadspec
    if [[ $r == 1 ]]; then sleep 0.5; request_lengths loadspec "$mark" >>"$WORK/peer.$kind.lengths"; fi
    mark=$(($(wc -l <"$PEER_LOG") + 1))
    BENCH_MODE=$kind BENCH_PATH=$path BENCH_BODY="$WORK/body.bin" \
        BENCH_CONTENT_TYPE="multipart/form-data; boundary=$BOUNDARY" \
        measure goose "$o.goose" "$GOOSE_BIN" --host "$PEER_HOST" -u "$users" -r "$users" \
        -t "${dur}s" --no-reset-metrics --quiet
    record goose "$o.goose" requests_goose
    if [[ $r == 1 ]]; then sleep 0.5; request_lengths goose "$mark" >>"$WORK/peer.$kind.lengths"; fi
    mark=$(($(wc -l <"$PEER_LOG") + 1))
    BENCH_MODE=$kind BENCH_PATH=$path BENCH_BODY="$WORK/body.bin" \
        BENCH_CONTENT_TYPE="multipart/form-data; boundary=$BOUNDARY" \
        measure locust "$o.locust" "$LOCUST_VENV/bin/locust" -f "$HERE/peers/locustfile.py" \
        --headless -u "$users" -r "$users" -t "${dur}s" --host "$PEER_HOST" --only-summary \
        --csv "$o.locust.csv"
    record locust "$o.locust" requests_locust
    if [[ $r == 1 ]]; then sleep 0.5; request_lengths locust "$mark" >>"$WORK/peer.$kind.lengths"; fi
}

peers() {
    ensure_frameworks
    make_image; make_multipart_body
    start_peer_nginx
    local users=${PEER_USERS:-50} rounds=${PEER_ROUNDS:-5} dur=${PEER_DURATION:-10} kind
    for kind in ${PEER_KINDS:-get upload}; do
        local path=/small.txt plan="$WORK/peer.$kind.toml" extra="expect = [200]"
        if [[ $kind == upload ]]; then
            path=/api/v1/ai-images
            extra="${S3_EXTRA//IMG/$IMG}"
        fi
        METHOD=$([[ $kind == upload ]] && echo POST || echo GET) \
            loadspec_plan "$plan" "$PEER_HOST$path" "$users" "$dur" "$extra"
        RESULTS="$WORK/peers.$kind.results"; : >"$RESULTS"
        : >"$WORK/peer.$kind.lengths"
        log "peers $kind: $users users, ${dur}s, $rounds interleaved rounds (load $(loadavg))"
        for r in $(seq "$rounds"); do peer_round "$kind" "$r" "$users" "$dur" "$path" "$plan"; done
        echo; echo "### peers, $kind: $users users, ${dur}s × $rounds interleaved rounds (medians; ratios per round, then the median and the range)"
        REF=loadspec table "$dur"
        ranges "$RESULTS"
        echo; echo "Request lengths at nginx (round 1):"; sed 's/^/- /' "$WORK/peer.$kind.lengths"
    done
    [[ -n ${PEER_NO_MEMORY:-} ]] || peer_memory
    stop_pid "$NGINX_PID"; NGINX_PID=
}

# Range of loadspec's advantage per round: loadspec req/CPU-s over each peer's, min..max.
ranges() {
    python3 - "$1" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for t, n, cpu, wall, load in rows:
    by.setdefault(t, []).append(int(n) / max(float(cpu), 1e-9))
ls = by.get("loadspec", [])
for t, v in by.items():
    if t == "loadspec":
        continue
    k = min(len(ls), len(v))
    r = [ls[i] / v[i] for i in range(k) if v[i] > 0]
    if r:
        print(f"loadspec / {t}, requests per CPU-second: median {st.median(r):.2f}× (range {min(r):.2f}–{max(r):.2f}, {k} rounds)")
PY
}

# Memory per user at 1k and 5k users, each tool against a slow (2 s) endpoint so users wait.
peer_memory() {
    start_demo_target --delay-ms 2000
    local url="http://$DT_ADDR" n tool
    echo; echo "### peers, memory per user (GET with a 2 s server delay; RSS peak minus the RSS with 10 users)"
    echo "| tool | users | RSS (MiB) | KB per user |"; echo "|---|---:|---:|---:|"
    for tool in loadspec goose locust; do
        local base=""
        for n in 10 ${PEER_MEM_USERS:-1000 5000}; do
            local pid peak=0 cur dur=12
            case $tool in
            loadspec)
                loadspec_plan "$WORK/pm.$n.toml" "$url/api/v1/ai-images/prompt" "$n" "$dur" 'expect = [200, 401, 400]'
                taskset -c "$GEN_CORE" "$LS_BIN" run --config "$WORK/pm.$n.toml" >/dev/null 2>&1 & pid=$! ;;
            goose)
                BENCH_MODE=get BENCH_PATH=/api/v1/ai-images/prompt taskset -c "$GEN_CORE" "$GOOSE_BIN" \
                    --host "$url" -u "$n" -r "$n" -t "${dur}s" --quiet >/dev/null 2>&1 & pid=$! ;;
            locust)
                BENCH_MODE=get BENCH_PATH=/api/v1/ai-images/prompt taskset -c "$GEN_CORE" \
                    "$LOCUST_VENV/bin/locust" -f "$HERE/peers/locustfile.py" --headless -u "$n" -r "$n" \
                    -t "${dur}s" --host "$url" --only-summary >/dev/null 2>&1 & pid=$! ;;
            esac
            for _ in $(seq $((dur * 4 - 4))); do
                sleep 0.25; cur=$(rss_kb "$pid" 2>/dev/null || echo 0)
                ((cur > peak)) && peak=$cur
            done
            wait "$pid" || true
            if [[ $n == 10 ]]; then base=$peak; continue; fi
            awk -v t="$tool" -v n="$n" -v p="$peak" -v b="$base" 'BEGIN {printf "| %s | %d | %.1f | %.1f |\n", t, n, p/1024, (p-b)*1.024/(n-10)}'
        done
    done
    stop_pid "$DT_PID"; DT_PID=
}
