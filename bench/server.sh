#!/usr/bin/env bash
# bench/server.sh [--quick]: the server stub against nginx (Debian nginx-light, config written
# here to a temp dir, its own loopback port), same machine, same run, same certificate:
#   1. check handling: wrk -t2 -cC keep-alive POSTs of the check XML to the stub, and to nginx
#      answering a static reply of the same bytes (`return 200`, access log buffered like the
#      stub's audit log), in CHECK_ROUNDS (full 3, quick 1) alternating rounds, median req/s,
#      and each server's CPU per check over all rounds. Target: stub >= 0.5x nginx.
#   2. image download: a file (full 200 MB, quick 8 MB) published through the admin API, fetched
#      by curl from the stub and from nginx (same file), plain HTTP and HTTPS, alternating,
#      median of 7 (quick: 3), and each server's CPU per MiB. Target: stub >= 0.9x nginx.
#   3. memory: stub RSS sampled while wrk keeps it busy (HTTP keep-alive and HTTPS with
#      `Connection: close`) for MEM_SECS (full 600, quick 6). Target: flat (end <= 1.1x the RSS
#      after the first tenth of the run).
source "$(dirname "$0")/lib.sh"

need wrk:wrk nginx:nginx-light curl:curl openssl:openssl python3:python3
build_bins ucupdate-server-stub
if [ "$QUICK" = 1 ]; then SECS=2; IMAGE_MB=8; DL_RUNS=3; MEM_SECS=${MEM_SECS:-6}; else SECS=10; IMAGE_MB=${IMAGE_MB:-200}; DL_RUNS=${DL_RUNS:-7}; MEM_SECS=${MEM_SECS:-600}; fi
CONNS=${CONNS:-64}
# Alternating rounds, so a swing in the other load on the machine hits both servers alike.
if [ "$QUICK" = 1 ]; then CHECK_ROUNDS=${CHECK_ROUNDS:-1}; else CHECK_ROUNDS=${CHECK_ROUNDS:-3}; fi

# One certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
start_stub --cert "$WORK/cert.pem" --key "$WORK/key.pem"

# The image, published like an admin would.
KEY=UCPhone/Polycom/CX700/A/ENU/CPE
VERSION=1.0.600.1
head -c $((IMAGE_MB * 1048576)) /dev/urandom >"$WORK/CPE.nbt"
curl -sf -H "Authorization: Bearer $(cat "$STUB_TOKEN_FILE")" -H "Content-Type: application/octet-stream" -T "$WORK/CPE.nbt" "${STUB_ADMIN%/}/admin/files/$KEY/$VERSION/CPE.nbt" >/dev/null || die "publish refused"
IFS=/ read -r dt br mo rev loc ut <<<"$KEY"
FILE_PATH=/DeviceUpdateFiles_Int/$dt/$br/$mo/$rev/$loc/$VERSION/$ut/CPE.nbt

# The stub's check reply, which nginx will serve byte for byte.
curl -sf -H 'Content-Type: text/xml; charset=utf-8' --data-binary @"$CHECK_BODY" "$STUB_INTERNAL" -o "$WORK/reply.xml" \
    || die "the stub refused the check body"
grep -q "['\\\\\$]" "$WORK/reply.xml" && die "reply holds ' \\ or \$; cannot inline it in nginx.conf"
REPLY=$(cat "$WORK/reply.xml"; echo x); REPLY=${REPLY%x}

# nginx: HTTP and HTTPS on ports picked now, the reply, the file tree.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGX=$WORK/nginx; mkdir -p "$NGX/root$(dirname "$FILE_PATH")" "$NGX/tmp"
ln "$WORK/CPE.nbt" "$NGX/root$FILE_PATH" 2>/dev/null || cp "$WORK/CPE.nbt" "$NGX/root$FILE_PATH"
NP=$(free_port); NPS=$(free_port)
cat >"$NGX/nginx.conf" <<NGINX
worker_processes auto;
user root;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log $NGX/access.log combined buffer=64k;
    client_body_temp_path $NGX/tmp; proxy_temp_path $NGX/tmp; fastcgi_temp_path $NGX/tmp;
    uwsgi_temp_path $NGX/tmp; scgi_temp_path $NGX/tmp;
    sendfile on; tcp_nopush on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NP;
        listen 127.0.0.1:$NPS ssl;
        ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
        root $NGX/root;
        default_type application/octet-stream;
        location = /RequestHandler/ucdevice.upx {
            default_type "text/xml; charset=utf-8";
            return 200 '$REPLY';
        }
    }
}
NGINX
nginx -c "$NGX/nginx.conf" -p "$NGX" >"$NGX/out" 2>&1 &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$NP$FILE_PATH" -r 0-0 && break; sleep 0.1; done
NGX_HTTP=http://127.0.0.1:$NP; NGX_HTTPS=https://127.0.0.1:$NPS
STUB_HTTP=$(origin "$STUB_INTERNAL"); STUB_HTTPS=$(origin "$STUB_TLS")
ngx_len=$(curl -s -X POST --data-binary @"$CHECK_BODY" "$NGX_HTTP/RequestHandler/ucdevice.upx" | wc -c)
[ "$ngx_len" = "$(wc -c <"$WORK/reply.xml")" ] || die "nginx reply is $ngx_len bytes, the stub's $(wc -c <"$WORK/reply.xml")"

# 1. Check handling, keep-alive.
LUA=$(wrk_lua keep)
log "checks: wrk -c$CONNS keep-alive, $CHECK_ROUNDS rounds of ${SECS}s, stub then nginx"
# CPU seconds of nginx: the master and its workers.
ngx_cpu() { local p t=0; for p in "$NGINX_PID" $(pgrep -P "$NGINX_PID"); do t=$(calc "$t+$(proc_cpu "$p")"); done; echo "$t"; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
s_rps=(); n_rps=(); s_cpu=0; n_cpu=0; s_req=0; n_req=0
for _ in $(seq "$CHECK_ROUNDS"); do
    c0=$(proc_cpu "$STUB_PID")
    r=$(wrk_rps "$LUA" "$STUB_INTERNAL" "$SECS" "$CONNS"); s_rps+=("$r")
    s_cpu=$(calc "$s_cpu+$(proc_cpu "$STUB_PID")-$c0"); s_req=$(calc "$s_req+$r*$SECS")
    c0=$(ngx_cpu)
    r=$(wrk_rps "$LUA" "$NGX_HTTP/RequestHandler/ucdevice.upx" "$SECS" "$CONNS"); n_rps+=("$r")
    n_cpu=$(calc "$n_cpu+$(ngx_cpu)-$c0"); n_req=$(calc "$n_req+$r*$SECS")
done
log "checks req/s: stub ${s_rps[*]}, nginx ${n_rps[*]}"
stub_ka=$(median "${s_rps[@]}"); ngx_ka=$(median "${n_rps[@]}")
stub_us=$(calc "$s_cpu*1000000/($s_req+1)"); ngx_us=$(calc "$n_cpu*1000000/($n_req+1)")

# 2. Downloads: curl, one stream, MiB/s; alternate the servers, median of DL_RUNS; server CPU per MiB.
curl_mibs() {
    curl -sf --cacert "$WORK/cert.pem" -o /dev/null -w '%{speed_download} %{size_download}\n' "$1" \
        | awk -v want=$((IMAGE_MB * 1048576)) '$2!=want{exit 1}{printf "%.1f\n", $1/1048576}'
}
declare -A D
for scheme in http https; do
    s=(); n=(); scpu=0; ncpu=0
    for i in $(seq "$DL_RUNS"); do
        if [ "$scheme" = http ]; then su=$STUB_HTTP; nu=$NGX_HTTP; else su=$STUB_HTTPS; nu=$NGX_HTTPS; fi
        c0=$(proc_cpu "$STUB_PID")
        s+=("$(curl_mibs "$su$FILE_PATH")") || die "stub download failed"
        scpu=$(calc "$scpu+$(proc_cpu "$STUB_PID")-$c0"); c0=$(ngx_cpu)
        n+=("$(curl_mibs "$nu$FILE_PATH")") || die "nginx download failed"
        ncpu=$(calc "$ncpu+$(ngx_cpu)-$c0")
    done
    D[stub-$scheme]=$(median "${s[@]}"); D[ngx-$scheme]=$(median "${n[@]}")
    # server CPU milliseconds per MiB served
    D[stubcpu-$scheme]=$(calc "$scpu*1000/($DL_RUNS*$IMAGE_MB)"); D[ngxcpu-$scheme]=$(calc "$ncpu*1000/($DL_RUNS*$IMAGE_MB)")
    log "download $scheme: stub ${s[*]} MiB/s, nginx ${n[*]} MiB/s"
done

# 3. Memory under load.
log "memory: ${MEM_SECS}s of wrk (HTTP keep-alive + HTTPS close) against the stub"
LUAC=$(wrk_lua close)
rss0=$(proc_kib "$STUB_PID" VmRSS)
timeout $((MEM_SECS + 30)) wrk -t1 -c16 -d"${MEM_SECS}s" -s "$LUA" "$STUB_INTERNAL" >"$WORK/mem-wrk1.txt" 2>&1 &
W1=$!; PIDS+=("$W1")
timeout $((MEM_SECS + 30)) wrk -t1 -c16 -d"${MEM_SECS}s" -s "$LUAC" "$STUB_TLS" >"$WORK/mem-wrk2.txt" 2>&1 &
W2=$!; PIDS+=("$W2")
step=$(( MEM_SECS / 10 )); [ "$step" -ge 1 ] || step=1
samples=()
for _ in $(seq 1 10); do
    sleep "$step"
    samples+=("$(proc_kib "$STUB_PID" VmRSS)")
done
wait "$W1" "$W2" || true
rss_end=$(proc_kib "$STUB_PID" VmRSS); hwm=$(proc_kib "$STUB_PID" VmHWM)
mem_reqs=$(cat "$WORK/mem-wrk1.txt" "$WORK/mem-wrk2.txt" | awk '/requests in/{s+=$1}END{print s+0}')

echo
echo "server: stub vs nginx-light, $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg)"
row measure stub nginx stub/nginx
row "check POST keep-alive (req/s, median of $CHECK_ROUNDS)" "$stub_ka" "$ngx_ka" "$(calc "$stub_ka/$ngx_ka")"
row "  server CPU per check (us)" "$stub_us" "$ngx_us" "$(div "$ngx_us" "$stub_us") (per core)"
for scheme in http https; do
    row "download ${IMAGE_MB} MiB $scheme (MiB/s, curl)" "${D[stub-$scheme]}" "${D[ngx-$scheme]}" "$(calc "${D[stub-$scheme]}/${D[ngx-$scheme]}")"
    row "  server CPU ms per MiB" "${D[stubcpu-$scheme]}" "${D[ngxcpu-$scheme]}" ""
done
echo "stub RSS KiB: idle $rss0, every $((step))s: ${samples[*]}, end $rss_end, peak $hwm ($mem_reqs requests in ${MEM_SECS}s)"
ratio "stub/nginx check keep-alive" "$(calc "$stub_ka/$ngx_ka")" ">=" 0.5
ratio "stub/nginx check keep-alive per server core" "$(div "$ngx_us" "$stub_us")"
for scheme in http https; do
    ratio "stub/nginx download $scheme" "$(calc "${D[stub-$scheme]}/${D[ngx-$scheme]}")" ">=" 0.9
done
ratio "stub RSS end / after first tenth" "$(calc "$rss_end/${samples[0]}")" "<=" 1.1
