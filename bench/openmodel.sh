# bench/openmodel.sh — the `openmodel` scenario of bench/run (issue 18): the generator CPU per
# request of the open model (constant-arrival-rate, ramping-arrival-rate) against the closed
# loop (constant-vus with think time) at the same request rate. Sourced by bench/run.
#
# The closed loop's think time is calibrated by a short run first, so that its achieved rate
# matches RATE: a VU's cycle is think + response time + the timer's rounding (tokio rounds a
# sleep up to the next millisecond), and only a measurement knows the last two.
#
# OM_BINS="label=path …" runs several binaries in the same interleaved rounds (e.g. main's
# build before a change and the change itself); each gets its own rows and ratios.

# om_plan FILE KIND URL RATE DURATION VUS THINK — one plan of the comparison.
om_plan() {
    local file=$1 kind=$2 url=$3 rate=$4 dur=$5 vus=$6 think=$7
    loadspec_plan "$file" "$url" "$vus" "$dur" "expect = [200]"
    case $kind in
    closed) sed -i "s/^executor = \"constant-vus\"/&\nthink_time = \"${think}us\"/" "$file" ;;
    closed-1vu)
        # The control: one VU, so its requests are spread out in time as the open model's
        # are. Half the period as think time: tokio rounds the sleep up to the next tick, so
        # the achieved rate is about RATE up to 1,000/s per VU, and lower beyond; it is printed.
        sed -i "s/^executor = \"constant-vus\"/&\nthink_time = \"$((1000000 / rate / 2))us\"/; s/^vus = .*/vus = 1/" "$file"
        ;;
    constant)
        sed -i "s/^executor = \"constant-vus\"/executor = \"constant-arrival-rate\"\nrate = $rate\npre_allocated_vus = $vus\nmax_vus = $((vus * 2))/; /^vus = /d" "$file"
        ;;
    ramping)
        # One stage that holds the rate: the ramping executor's code path at a constant rate.
        sed -i "s/^executor = \"constant-vus\"/executor = \"ramping-arrival-rate\"\nstart_rate = $rate\npre_allocated_vus = $vus\nmax_vus = $((vus * 2))\nstages = [{ duration = \"${dur}s\", target = $rate }]/; /^vus = /d; /^duration = /d" "$file"
        ;;
    esac
}

# The think time (µs) that makes VUS closed-loop VUs send RATE requests/s, from a 3 s run.
om_calibrate() {
    local url=$1 rate=$2 vus=$3 bin=$4 period think n achieved
    period=$((vus * 1000000 / rate))
    om_plan "$WORK/om-cal.toml" closed "$url" "$rate" 3 "$vus" "$period"
    taskset -c "$GEN_CORE" "$bin" run --config "$WORK/om-cal.toml" >"$WORK/om-cal.out" 2>"$WORK/om-cal.err" || true
    n=$(requests_loadspec "$WORK/om-cal.out")
    ((n > 0)) || die "the calibration run sent nothing: $(tail -3 "$WORK/om-cal.err")"
    # Per-VU cycle measured = period + overhead; aim the cycle at the period.
    think=$(python3 -c "p, n, v = $period, $n, $vus; c = 3e6 * v / n; print(max(0, round(p - (c - p))))")
    log "openmodel: closed calibration: think ${period} µs gave $((n / 3)) req/s; think ${think} µs for $rate/s"
    echo "$think"
}

OM_PLANS="closed closed-1vu constant ramping"

openmodel() {
    local rate=${RATE:-1000} dur=${OM_DURATION:-$DURATION} vus=${OM_VUS:-50} rounds=$ROUNDS
    ((rounds >= 5)) || [[ -n $QUICK ]] || rounds=5
    local bins=(${OM_BINS:-"loadspec=$LS_BIN"}) b label path think kind r
    start_nginx
    local url=$NGINX_URL first=${bins[0]#*=}
    think=${OM_THINK_US:-$(om_calibrate "$url" "$rate" "$vus" "$first")}
    [[ -n $think ]] || die "no think time (the calibration failed)"
    for kind in $OM_PLANS; do
        om_plan "$WORK/om-$kind.toml" "$kind" "$url" "$rate" "$dur" "$vus" "$think"
    done
    RESULTS="$WORK/openmodel.results"; : >"$RESULTS"
    log "openmodel: $rate/s, $vus VUs, think ${think} µs, ${dur}s × $rounds rounds, ${bins[*]} (load $(loadavg))"
    for r in $(seq "$rounds"); do
        for b in "${bins[@]}"; do
            label=${b%%=*}; path=${b#*=}
            for kind in $OM_PLANS; do
                local o="$WORK/om.$r.$label.$kind"
                measure "$label" "$o" "$path" run --config "$WORK/om-$kind.toml"
                local n u s w
                n=$(requests_loadspec "$o")
                # The last line: /usr/bin/time puts "Command exited with non-zero status N"
                # before it when the run fails (e.g. an SLA broken by dropped arrivals).
                read -r u s w < <(tail -n 1 "$o.time")
                echo "$r $label $kind ${n:-0} $u $s $w $(loadavg)" >>"$RESULTS"
                log "round $r $label $kind: $n requests, user ${u}s sys ${s}s, load $(loadavg)"
            done
        done
    done
    echo; echo "### openmodel: GET 100 B from nginx at $rate/s, $vus VUs (closed: think ${think} µs), ${dur}s × $rounds rounds"
    om_table "$dur"
    [[ -z ${OM_PROFILE:-} ]] || om_profile "$first"
    stop_pid "$NGINX_PID"; NGINX_PID=
}

# om_table DURATION — medians per binary and plan, and each round's open/closed CPU ratio.
om_table() {
    python3 - "$RESULTS" "$1" <<'EOF'
import sys, statistics as st
path, dur = sys.argv[1], float(sys.argv[2])
runs = {}
for line in open(path):
    try:
        r, label, kind, n, u, s, w, load = line.split()
        float(u), float(s)
    except ValueError:
        print(f"skipped (no CPU times): {line.strip()}")
        continue
    n = int(n)
    runs.setdefault((label, kind), {})[int(r)] = (n / dur, 1e6 * float(u) / max(n, 1),
                                                  1e6 * float(s) / max(n, 1), float(load))
def rng(xs, fmt):
    return f"{fmt.format(st.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
print("| binary | plan | requests/s | user µs/request | sys µs/request | CPU µs/request | ratio to closed (CPU/request) | load avg |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for (label, kind), rows in runs.items():
    closed = runs.get((label, "closed"), {})
    rounds = sorted(rows)
    ratios = [(rows[i][1] + rows[i][2]) / (closed[i][1] + closed[i][2]) for i in rounds if i in closed]
    col = lambda k: [rows[i][k] for i in rounds]
    tot = [rows[i][1] + rows[i][2] for i in rounds]
    print(f"| {label} | {kind} | {st.median(col(0)):,.0f} | {rng(col(1), '{:.1f}')} | "
          f"{rng(col(2), '{:.1f}')} | {rng(tot, '{:.1f}')} | {rng(ratios, '{:.2f}×')} | "
          f"{st.median(col(3)):.2f} |")
print("\nCPU µs/request and ratios: median (min–max) over the rounds; a ratio compares a plan with the closed loop of the same binary in the same round.")
EOF
}

# om_profile BIN — with OM_PROFILE=1, one more run of each plan under `strace -c -f` (system
# calls per request; column 4 of its summary is the call count) and one under
# `perf record -e cpu-clock -g` (the top symbols). Neither run is timed: strace slows it.
om_profile() {
    local bin=$1 kind o
    echo; echo "#### system calls per request (strace -c -f) and the top of the profile (perf, cpu-clock)"
    for kind in $OM_PLANS; do
        o="$WORK/om-prof.$kind"
        taskset -c "$GEN_CORE" strace -c -f -o "$o.strace" "$bin" run --config "$WORK/om-$kind.toml" >"$o.out" 2>"$o.err" || true
        awk -v k="$kind" -v n="$(requests_loadspec "$o.out")" '
            $NF ~ /^(epoll_wait|writev|recvfrom|futex|sched_yield)$/ {
                s = s sprintf(" %s %.2f", $NF, $4 / n) }
            END { printf "%s (%d requests): per request%s\n", k, n, s }' "$o.strace"
        perf record -q -e cpu-clock -g -o "$o.perf" -- taskset -c "$GEN_CORE" "$bin" run --config "$WORK/om-$kind.toml" >/dev/null 2>&1 || true
        perf report -i "$o.perf" --no-children --sort sym --stdio 2>/dev/null |
            grep -E '^ +[0-9.]+%' | head -5 | sed "s/^ */  $kind: /" || true # head closes the pipe
    done
}
