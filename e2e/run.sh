#!/usr/bin/env bash
# End-to-end test of the release pipeline and the client updater against a
# real nginx:
#
#   e2e/run.sh            (from anywhere; DELTAUP_CORPUS overrides the corpus)
#
# Builds mkdelta and deltaup, publishes esbuild 0.25.0..0.25.12 and prettier
# 3.3.0..3.3.3 into two signed repositories, serves them with nginx on a
# loopback port and checks, with nginx's access log as the witness:
#   1. fast link: esbuild 0.25.0 -> 0.25.12 and prettier 3.3.0 -> 3.3.3 end
#      in exactly the published trees (contents and modes), and the artifact
#      bytes nginx served equal the plan of `deltaup check --json`, exactly;
#   2. slow link (limit_rate 200k): an update killed with SIGKILL during its
#      first download resumes with a Range request in a second run, serves at
#      most the plan + 256 KiB over both runs and ends in the exact tree;
#   3. 1 Mbit/s link (limit_rate 125k): bytes and wall time of deltaup's chain
#      against curl of the full tar.zst, written to bench/RESULTS-e2e.md.
#   4. object store, when versitygw is found ($VERSITYGW or PATH): the corpus
#      published to a versitygw bucket (timed against a local directory), a
#      publish killed with SIGKILL then completed, two publishers at once,
#      0.25.0 -> 0.25.12 through nginx proxying to the bucket (byte-exact,
#      bytes = plan), prune --keep 5 then kept versions updated by patches,
#      then mkdelta migrate, key rotate and refresh on the bucket and a v2
#      client (shipping root/1.json) updating through nginx;
#      figures appended to bench/RESULTS-e2e.md.
# Skips (exit 0, saying why) when the corpus or nginx is absent.
# E2E_KEEP=1 keeps the work directory; NGINX=path picks the nginx binary.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
corpus=${DELTAUP_CORPUS:-$HOME/.cache/deltaup-corpus}
es_versions=(0.25.0 0.25.1 0.25.2 0.25.3 0.25.4 0.25.5 0.25.6 0.25.7 0.25.8 0.25.9 0.25.10 0.25.11 0.25.12)
pr_versions=(3.3.0 3.3.1 3.3.2 3.3.3)
slack=$((256 << 10)) # one partial read nginx may have sent before the kill

skip() {
  echo "e2e: SKIP: $*"
  exit 0
}
die() {
  echo "e2e: FAIL: $*" >&2
  exit 1
}
log() { printf 'e2e: %s\n' "$*"; }

# ---- prerequisites -----------------------------------------------------------
for v in "${es_versions[@]}"; do
  [ -d "$corpus/esbuild/$v" ] || skip "no corpus at $corpus/esbuild/$v (run ../shared/corpus/fetch.sh or set DELTAUP_CORPUS)"
done
for v in "${pr_versions[@]}"; do
  [ -d "$corpus/prettier/$v" ] || skip "no corpus at $corpus/prettier/$v (run ../shared/corpus/fetch.sh or set DELTAUP_CORPUS)"
done
nginx=${NGINX:-$(command -v nginx || true)}
if [ -z "$nginx" ] && [ -x /usr/sbin/nginx ]; then nginx=/usr/sbin/nginx; fi
[ -n "$nginx" ] && [ -x "$nginx" ] || skip "nginx not found (apt-get install nginx-light)"
command -v go >/dev/null || die "go not found"
command -v curl >/dev/null || die "curl not found (needed for the full-archive figure)"
tar --zstd --version >/dev/null 2>&1 && command -v zstd >/dev/null || die "tar --zstd needs zstd (apt-get install zstd)"

# ---- work directory, cleanup ---------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/deltaup-e2e.XXXXXX")
chmod 755 "$work" # nginx workers may run as another user
ngx=$work/nginx
bg_pids=()
cleanup() {
  local rc=$?
  for p in "${bg_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -s "$ngx/nginx.pid" ]; then
    kill "$(cat "$ngx/nginx.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -e "$ngx/nginx.pid" ] || break; sleep 0.1; done
  fi
  if [ "$rc" -ne 0 ] && [ -f "$ngx/error.log" ]; then
    echo "---- nginx error.log (tail)" >&2
    tail -n 20 "$ngx/error.log" >&2 || true
  fi
  if [ "${E2E_KEEP:-}" = 1 ]; then
    echo "e2e: kept $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$SECONDS
timings=()
phase_start=$SECONDS
phase_name=""
phase() {
  if [ -n "$phase_name" ]; then timings+=("$(printf '%5ds  %s' $((SECONDS - phase_start)) "$phase_name")"); fi
  phase_name=$*
  phase_start=$SECONDS
  printf '\n== e2e: %s\n' "$*"
}

# now_ms prints a monotonic-enough wall clock in milliseconds.
now_ms() { date +%s%3N; }

# ---- build ----------------------------------------------------------------------
phase "build mkdelta and deltaup"
mkdir -p "$work/bin"
(cd "$root" && go build -o "$work/bin/" ./cmd/mkdelta ./cmd/deltaup)
mkdelta=$work/bin/mkdelta
deltaup=$work/bin/deltaup
"$mkdelta" keygen -o "$work/k" >/dev/null

# ---- publish --------------------------------------------------------------------
repos=$work/repos
mkdir -p "$repos"
publish() { # app dir-in-corpus versions...
  local app=$1
  shift
  for v in "$@"; do
    "$mkdelta" publish -q --repo "$repos/$app" --app "$app" --version "$v" --key "$work/k.key" \
      --patches-from 3 "$corpus/$app/$v"
  done
  log "published $app $* ($(find "$repos/$app/patches" -type f | wc -l) patches)"
}
phase "publish esbuild (13 versions, --patches-from 3)"
es_local_ms=$(now_ms)
publish esbuild "${es_versions[@]}"
es_local_ms=$(($(now_ms) - es_local_ms))
phase "publish prettier (4 versions, --patches-from 3)"
publish prettier "${pr_versions[@]}"
chmod -R a+rX "$repos"

# ---- versitygw (S3-compatible object store), when present ---------------------------
# Started before nginx, which proxies /s3/ to its bucket as a CDN would.
vgw=${VERSITYGW:-$(command -v versitygw || true)}
vport=""
s3_location=""
if [ -n "$vgw" ] && [ -x "$vgw" ]; then
  phase "start versitygw (posix backend) and make bucket rel public-read"
  mkdir -p "$work/vgw"
  export AWS_ACCESS_KEY_ID=deltaup AWS_SECRET_ACCESS_KEY=deltaup-e2e-secret
  for _ in $(seq 20); do
    p=$((20000 + RANDOM % 40000))
    ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
      "$vgw" --port "127.0.0.1:$p" --quiet posix "$work/vgw" >"$work/vgw.log" 2>&1 &
    vpid=$!
    bg_pids+=("$vpid")
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$p/" && break
      kill -0 "$vpid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$vpid" 2>/dev/null && curl -s -o /dev/null "http://127.0.0.1:$p/"; then
      vport=$p
      break
    fi
  done
  [ -n "$vport" ] || { cat "$work/vgw.log" >&2; die "versitygw did not start on any of 20 loopback ports"; }
  (cd "$root" && go build -o "$work/bin/" ./e2e/s3public)
  "$work/bin/s3public" -endpoint "http://127.0.0.1:$vport" -bucket rel
  s3_location="location /s3/ { proxy_pass http://127.0.0.1:$vport/rel/; proxy_buffering on; access_log $ngx/s3.log e2e; }"
  log "versitygw $("$vgw" --version 2>&1 | head -n1) pid $vpid on 127.0.0.1:$vport"
else
  log "versitygw not found (set VERSITYGW or go install github.com/versity/versitygw/cmd/versitygw@v1.8.0): the object-store part is skipped"
fi

# ---- nginx ----------------------------------------------------------------------
phase "start nginx"
mkdir -p "$ngx/tmp"
user_line=""
if [ "$(id -u)" -eq 0 ]; then
  # As root the master would drop the workers to nobody; keep them as us.
  user_line="user $(id -un) $(id -gn);"
fi
write_conf() { # port
  cat >"$ngx/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon on;
pid $ngx/nginx.pid;
error_log $ngx/error.log info;
events { worker_connections 64; }
http {
  types { application/json json; application/zstd zst; application/gzip gz; }
  default_type application/octet-stream;
  client_body_temp_path $ngx/tmp/body;
  proxy_temp_path $ngx/tmp/proxy;
  fastcgi_temp_path $ngx/tmp/fastcgi;
  uwsgi_temp_path $ngx/tmp/uwsgi;
  scgi_temp_path $ngx/tmp/scgi;
  log_format e2e '\$request \$status \$body_bytes_sent \$http_range';
  access_log off;
  sendfile on;
  server {
    listen 127.0.0.1:$1;
    server_name localhost;
    root $repos;
    location /fast/ { alias $repos/; access_log $ngx/fast.log e2e; }
    location /slow/ { alias $repos/; limit_rate 200k; access_log $ngx/slow.log e2e; }
    location /link/ { alias $repos/; limit_rate 125k; access_log $ngx/link.log e2e; }
    $s3_location
  }
}
CONF
}
port=""
for _ in $(seq 20); do
  p=$((20000 + RANDOM % 40000))
  write_conf "$p"
  if "$nginx" -p "$ngx" -c "$ngx/nginx.conf" -e "$ngx/error.log" 2>>"$ngx/start.err"; then
    port=$p
    break
  fi
done
[ -n "$port" ] || {
  cat "$ngx/start.err" >&2
  die "nginx did not start on any of 20 loopback ports"
}
for _ in $(seq 50); do [ -s "$ngx/nginx.pid" ] && break; sleep 0.1; done
base=http://127.0.0.1:$port
curl -fsS -o /dev/null "$base/fast/esbuild/manifest.json" || die "nginx does not serve $base/fast/esbuild/manifest.json"
log "nginx $("$nginx" -v 2>&1 | sed 's|.*version: nginx/||') pid $(cat "$ngx/nginx.pid") on $base"

# ---- helpers ----------------------------------------------------------------------
# install_app APP VERSION DIR: unpack the published tar.zst of VERSION into DIR.
install_app() {
  rm -rf "$3" "$3.backup"
  mkdir -p "$3"
  tar --zstd -xpf "$repos/$1/archives/$1-$2.tar.zst" -C "$3"
}

# assert_tree DIR WANT: same names, types, modes, link targets and contents.
assert_tree() {
  local listing='%y %m %P -> %l\n'
  diff -r --no-dereference "$2" "$1" >/dev/null || {
    diff -r --no-dereference "$2" "$1" | head -20 >&2
    die "$1 differs from $2"
  }
  diff <(cd "$2" && find . -mindepth 1 -printf "$listing" | sort) \
    <(cd "$1" && find . -mindepth 1 -printf "$listing" | sort) >&2 ||
    die "$1 differs from $2 in file types or modes"
}

# plan APP DIR SERVER: run `deltaup check --json`, check the route goes
# from $4 to $5 and print its bytes.
plan() {
  local out rc=0
  out=$("$deltaup" check --json --app-dir "$2" --server "$3" --pubkey "$work/k.pub" --app "$1") || rc=$?
  [ "$rc" -eq 3 ] || die "deltaup check exited $rc, want 3 (update ready): $out"
  local line
  line=$(grep '"event":"update-ready"' <<<"$out") || die "no update-ready event: $out"
  grep -q "\"current\":\"$4\"" <<<"$line" || die "check: current is not $4: $line"
  grep -q "\"target\":\"$5\"" <<<"$line" || die "check: target is not $5: $line"
  echo >&2 "e2e: plan: $line"
  grep -o '"bytes":[0-9]*' <<<"$line" | cut -d: -f2
}

# served LOG FROM PATTERN: sum of body_bytes_sent of the requests logged
# after line FROM whose URI matches PATTERN (an ERE).
served() {
  tail -n "+$(($2 + 1))" "$1" | awk -v pat="$3" '$2 ~ pat { s += $5 } END { print s + 0 }'
}
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

update() { # APP DIR SERVER [flags...]
  local app=$1 dir=$2 server=$3
  shift 3
  "$deltaup" update --app-dir "$dir" --server "$server" --pubkey "$work/k.pub" --app "$app" --yes --no-reexec "$@"
}

# ---- 1. fast link -------------------------------------------------------------------
fast_case() { # APP FROM TO
  local app=$1 from=$2 to=$3 dir=$work/apps/$1-fast
  install_app "$app" "$from" "$dir"
  local want got before ms
  want=$(plan "$app" "$dir" "$base/fast/$app" "$from" "$to")
  before=$(lines "$ngx/fast.log")
  ms=$(now_ms)
  update "$app" "$dir" "$base/fast/$app"
  ms=$(($(now_ms) - ms))
  assert_tree "$dir" "$corpus/$app/$to"
  got=$(served "$ngx/fast.log" "$before" "^/fast/$app/(patches|archives)/")
  [ "$got" -eq "$want" ] || die "$app: nginx served $got artifact bytes, the plan said $want"
  log "OK $app $from -> $to: tree exact, served $got artifact bytes = plan, ${ms} ms"
  tail -n "+$((before + 1))" "$ngx/fast.log" | sed 's/^/    nginx: /'
}
phase "fast link: esbuild 0.25.0 -> 0.25.12"
fast_case esbuild 0.25.0 0.25.12
phase "fast link: prettier 3.3.0 -> 3.3.3"
fast_case prettier 3.3.0 3.3.3

# ---- 2. slow link, SIGKILL mid-download, resume ----------------------------------------
phase "slow link (limit_rate 200k): kill -9 mid-download, resume"
dir=$work/apps/esbuild-slow
install_app esbuild 0.25.0 "$dir"
want=$(plan esbuild "$dir" "$base/slow/esbuild" 0.25.0 0.25.12)
before=$(lines "$ngx/slow.log")
# nginx's limit_rate lets the first second's worth (200k) through at once;
# the client-side cap keeps the first download in flight long enough to be
# killed in the middle.
# The binary itself, not the update function: $! must be deltaup's pid.
"$deltaup" update --app-dir "$dir" --server "$base/slow/esbuild" --pubkey "$work/k.pub" --app esbuild --yes --no-reexec \
  --limit-rate 64k >"$work/slow-1.out" 2>&1 &
upd=$!
bg_pids+=("$upd")
part=""
for _ in $(seq 600); do
  part=$(find "$dir.backup/downloads" -name '*.part' -size +0 2>/dev/null | head -n 1 || true)
  [ -n "$part" ] && break
  kill -0 "$upd" 2>/dev/null || break
  sleep 0.05
done
[ -n "$part" ] || {
  cat "$work/slow-1.out" >&2
  die "no .part file with data appeared in $dir.backup/downloads"
}
sleep 0.3
kill -9 "$upd" 2>/dev/null || die "deltaup update finished before it could be killed"
wait "$upd" 2>/dev/null || true
partsize=$(stat -c %s "$part")
log "killed deltaup (pid $upd) with $(basename "$part") at $partsize bytes"
ls -la "$dir.backup" "$dir.backup/downloads" | sed 's/^/    /'
sleep 1.2 # let nginx notice the dead connection and log it
update esbuild "$dir" "$base/slow/esbuild" >"$work/slow-2.out" 2>&1 || {
  cat "$work/slow-2.out" >&2
  die "the second deltaup update failed"
}
sed 's/^/    deltaup: /' "$work/slow-2.out"
assert_tree "$dir" "$corpus/esbuild/0.25.12"
tail -n "+$((before + 1))" "$ngx/slow.log" | sed 's/^/    nginx: /'
tail -n "+$((before + 1))" "$ngx/slow.log" | awk '$4 == 206 && $6 ~ /^bytes=[0-9]+-/' | grep -q . ||
  die "no 206 answer to a Range request in the access log: the download did not resume"
got=$(served "$ngx/slow.log" "$before" "^/slow/esbuild/(patches|archives)/")
[ "$got" -ge "$want" ] || die "slow: nginx served $got artifact bytes, less than the plan's $want"
[ "$got" -le $((want + slack)) ] || die "slow: nginx served $got artifact bytes over both runs, more than plan $want + $slack"
log "OK resumed with a Range request; served $got artifact bytes over both runs (plan $want, +$((got - want))); tree exact"

phase "slow link: kill -9 while staging (after the first hop's download), rerun"
dir=$work/apps/esbuild-stagekill
install_app esbuild 0.25.0 "$dir"
want=$(plan esbuild "$dir" "$base/slow/esbuild" 0.25.0 0.25.12)
before=$(lines "$ngx/slow.log")
"$deltaup" update --app-dir "$dir" --server "$base/slow/esbuild" --pubkey "$work/k.pub" --app esbuild --yes --no-reexec \
  >"$work/stage-1.out" 2>&1 &
upd=$!
bg_pids+=("$upd")
staged=""
for _ in $(seq 600); do
  staged=$(find "$dir.backup/staged" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | head -n 1 || true)
  [ -n "$staged" ] && break
  kill -0 "$upd" 2>/dev/null || break
  sleep 0.02
done
[ -n "$staged" ] || {
  cat "$work/stage-1.out" >&2
  die "no staged directory appeared in $dir.backup/staged"
}
kill -9 "$upd" 2>/dev/null || die "deltaup update finished before it could be killed"
wait "$upd" 2>/dev/null || true
log "killed deltaup (pid $upd) while it built $(basename "$staged"); left behind:"
(cd "$dir.backup" && find . -mindepth 1 | sort | sed 's/^/    /')
sleep 1.2
update esbuild "$dir" "$base/slow/esbuild" >"$work/stage-2.out" 2>&1 || {
  cat "$work/stage-2.out" >&2
  die "the deltaup update after a kill during staging failed"
}
sed 's/^/    deltaup: /' "$work/stage-2.out"
assert_tree "$dir" "$corpus/esbuild/0.25.12"
tail -n "+$((before + 1))" "$ngx/slow.log" | sed 's/^/    nginx: /'
got=$(served "$ngx/slow.log" "$before" "^/slow/esbuild/(patches|archives)/")
[ "$got" -ge "$want" ] || die "staging kill: nginx served $got artifact bytes, less than the plan's $want"
[ "$got" -le $((want + slack)) ] || die "staging kill: nginx served $got artifact bytes over both runs, more than plan $want + $slack"
leftover=$(find "$dir.backup" -mindepth 1 -maxdepth 1 ! -name lock ! -name state.json ! -name app_dir -printf '%f ' || true)
[ -z "$leftover" ] || die "staging kill: $dir.backup still holds: $leftover"
log "OK rerun coped with the stale lock file and staged directory; served $got artifact bytes over both runs (plan $want, +$((got - want))); tree exact"

# ---- 3. the 1 Mbit/s figure ---------------------------------------------------------------
phase "1 Mbit/s link (limit_rate 125k): deltaup chain vs full tar.zst"
dir=$work/apps/esbuild-link
install_app esbuild 0.25.0 "$dir"
want=$(plan esbuild "$dir" "$base/link/esbuild" 0.25.0 0.25.12)
before=$(lines "$ngx/link.log")
ms=$(now_ms)
update esbuild "$dir" "$base/link/esbuild" --limit-rate 125KiB >"$work/link.out" 2>&1 || {
  cat "$work/link.out" >&2
  die "deltaup update over the 1 Mbit/s link failed"
}
chain_ms=$(($(now_ms) - ms))
chain_reqs=$(($(lines "$ngx/link.log") - before))
assert_tree "$dir" "$corpus/esbuild/0.25.12"
chain_art=$(served "$ngx/link.log" "$before" "^/link/esbuild/(patches|archives)/")
chain_all=$(served "$ngx/link.log" "$before" "^/link/")
nsteps=$(tail -n "+$((before + 1))" "$ngx/link.log" | awk '$2 ~ "^/link/esbuild/(patches|archives)/"' | wc -l)
[ "$chain_art" -eq "$want" ] || die "link: nginx served $chain_art artifact bytes, the plan said $want"
before=$(lines "$ngx/link.log")
ms=$(now_ms)
curl -fsS --limit-rate 125k -o "$work/full.tar.zst" "$base/link/esbuild/archives/esbuild-0.25.12.tar.zst"
full_ms=$(($(now_ms) - ms))
full=$(served "$ngx/link.log" "$before" "^/link/")
cmp -s "$work/full.tar.zst" "$repos/esbuild/archives/esbuild-0.25.12.tar.zst" || die "curl fetched a different archive"
log "chain: $chain_art artifact bytes in $nsteps downloads ($chain_all with manifest and file lists), ${chain_ms} ms"
log "full:  $full bytes, ${full_ms} ms"

secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }
kb() { awk -v b="$1" 'BEGIN { s = sprintf("%d", b); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }; print s o }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || true)
results=$root/bench/RESULTS-e2e.md
# The load-test section (go run ./bench/load -write) is kept across runs.
load_section=$(sed -n '/^<!-- load-test -->$/,$p' "$results" 2>/dev/null || true)
cat >"$results" <<MD
# End-to-end: esbuild 0.25.0 → 0.25.12 over a 1 Mbit/s link

Written by \`e2e/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); machine: ${cpu:-unknown CPU}, $(nproc) CPUs,
$(uname -sm), $(go version | awk '{print $3}'), nginx $("$nginx" -v 2>&1 | sed 's|.*version: nginx/||').

The repository holds all 13 releases 0.25.0 … 0.25.12 published with \`--patches-from 3\` and the default
milestone patches (0.25.4 from 0.25.0; 0.25.8 from 0.25.0 and 0.25.4; 0.25.12 from 0.25.8).
The link is nginx \`limit_rate 125k\` (128,000 B/s ≈ 1 Mbit/s per connection) on loopback,
with the client capped at the same rate (\`deltaup --limit-rate 125KiB\`, \`curl --limit-rate 125k\`)
because nginx lets each request's first second through at once. Bytes are nginx's
\`\$body_bytes_sent\` from its access log; time is wall clock of the whole command
(for deltaup: manifest, file list, downloads, patching every hop, verifying, swapping).

| method | downloads | bytes | share of full | wall time |
|---|---:|---:|---:|---:|
| \`deltaup update\` (patch chain) | $nsteps | $(kb "$chain_art") | $(pct "$chain_art" "$full") | $(secs "$chain_ms") |
| same, with manifest, signature and file lists | $chain_reqs requests | $(kb "$chain_all") | $(pct "$chain_all" "$full") | |
| \`curl\` of \`esbuild-0.25.12.tar.zst\` | 1 | $(kb "$full") | 100% | $(secs "$full_ms") |
MD
log "wrote $results"
cat "$results"

# ---- 4. object store: versitygw ------------------------------------------------------------
if [ -n "$vport" ]; then
  s3repo() { echo "s3://rel/$1?endpoint=http://127.0.0.1:$vport&region=us-east-1&use_path_style=true"; }
  s3pub() { # prefix version [flags]
    local pre=$1 v=$2
    shift 2
    "$mkdelta" publish -q --repo "$(s3repo "$pre")" --app esbuild --version "$v" --key "$work/k.key" --patches-from 3 "$@" "$corpus/esbuild/$v"
  }
  phase "object store: publish esbuild 0.25.0..0.25.11 to versitygw, kill -9 the publish of 0.25.12, publish it again"
  ms=$(now_ms)
  for v in "${es_versions[@]:0:12}"; do s3pub esbuild "$v"; done
  "$mkdelta" publish -q --repo "$(s3repo esbuild)" --app esbuild --version 0.25.12 --key "$work/k.key" --patches-from 3 "$corpus/esbuild/0.25.12" &
  pubpid=$!
  bg_pids+=("$pubpid")
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.5 + 2.5 * r / 32768 }')"
  if kill -9 "$pubpid" 2>/dev/null; then killed_at="killed"; else killed_at="finished before the kill"; fi
  wait "$pubpid" 2>/dev/null || true
  "$mkdelta" verify --repo "$(s3repo esbuild)" --pubkey "$work/k.pub" >"$work/s3-verify-killed.out" ||
    die "the bucket does not verify after the killed publish: $(cat "$work/s3-verify-killed.out")"
  log "publish of 0.25.12 $killed_at; the previous release stays in force: $(tail -n1 "$work/s3-verify-killed.out")"
  s3pub esbuild 0.25.12
  s3_ms=$(($(now_ms) - ms))
  "$mkdelta" verify --repo "$(s3repo esbuild)" --pubkey "$work/k.pub" >"$work/s3-verify.out" || die "bucket verify: $(cat "$work/s3-verify.out")"
  grep -q '^esbuild: sequence 13, 13 releases' "$work/s3-verify.out" || die "bucket verify: $(cat "$work/s3-verify.out")"
  log "published to versitygw in ${s3_ms} ms (local directory: ${es_local_ms} ms), including the killed attempt"
  # The clean figure: the same 13 publishes into a fresh prefix and a fresh
  # directory, alternating version by version so that both see the same
  # load on a shared machine.
  s3_clean_ms=0
  local_again_ms=0
  for v in "${es_versions[@]}"; do
    ms=$(now_ms)
    "$mkdelta" publish -q --repo "$work/local-again" --app esbuild --version "$v" --key "$work/k.key" --patches-from 3 "$corpus/esbuild/$v"
    local_again_ms=$((local_again_ms + $(now_ms) - ms))
    ms=$(now_ms)
    s3pub clean "$v"
    s3_clean_ms=$((s3_clean_ms + $(now_ms) - ms))
  done
  log "13 publishes, alternating: versitygw ${s3_clean_ms} ms, local directory ${local_again_ms} ms"

  phase "object store: two publishers at once"
  "$mkdelta" publish -q --repo "$(s3repo race)" --app esbuild --version 0.25.0 --key "$work/k.key" "$corpus/esbuild/0.25.0" >"$work/race-1.out" 2>&1 &
  r1=$!
  bg_pids+=("$r1")
  for _ in $(seq 100); do [ -d "$work/vgw/rel/race.deltaup-lock" ] && break; sleep 0.05; done
  rc2=0
  "$mkdelta" publish -q --repo "$(s3repo race)" --app esbuild --version 0.25.1 --key "$work/k.key" "$corpus/esbuild/0.25.1" >"$work/race-2.out" 2>&1 || rc2=$?
  rc1=0
  wait "$r1" || rc1=$?
  [ "$rc1" -eq 0 ] || die "the first publisher failed: $(cat "$work/race-1.out")"
  [ "$rc2" -eq 1 ] && grep -q 'another publish holds the lease' "$work/race-2.out" ||
    die "the second publisher was not refused (exit $rc2): $(cat "$work/race-2.out")"
  log "OK second publisher refused: $(cat "$work/race-2.out")"

  phase "object store: update through nginx in front of versitygw (a CDN), byte-exact"
  dir=$work/apps/esbuild-s3
  install_app esbuild 0.25.0 "$dir"
  want=$(plan esbuild "$dir" "$base/s3/esbuild" 0.25.0 0.25.12)
  before=$(lines "$ngx/s3.log")
  update esbuild "$dir" "$base/s3/esbuild" >"$work/s3-update.out" 2>&1 || { cat "$work/s3-update.out" >&2; die "update from the bucket failed"; }
  assert_tree "$dir" "$corpus/esbuild/0.25.12"
  got=$(served "$ngx/s3.log" "$before" "^/s3/esbuild/(patches|archives)/")
  [ "$got" -eq "$want" ] || die "s3: nginx served $got artifact bytes, the plan said $want"
  log "OK esbuild 0.25.0 -> 0.25.12 from the bucket: tree exact, $got artifact bytes = plan"
  curl -fsSI "$base/s3/esbuild/archives/esbuild-0.25.12.tar.zst" | grep -qi '^cache-control: public, max-age=31536000, immutable' || die "no immutable Cache-Control on an archive"
  curl -fsSI "$base/s3/esbuild/manifest.json" | grep -qi '^cache-control: public, max-age=60' || die "no short Cache-Control on manifest.json"

  phase "object store: prune --keep 5, every kept version still reaches 0.25.12"
  size_of() { find "$work/vgw/rel/$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
  s3_before=$(size_of esbuild)
  "$mkdelta" prune -q --repo "$(s3repo esbuild)" --key "$work/k.key" --keep 5
  again=$("$mkdelta" prune --dry-run --repo "$(s3repo esbuild)" --key "$work/k.key" --keep 5)
  grep -q 'nothing to prune' <<<"$again" || die "a second prune found more: $again"
  s3_after=$(size_of esbuild)
  "$mkdelta" verify --repo "$(s3repo esbuild)" --pubkey "$work/k.pub" >"$work/s3-verify-pruned.out" || die "verify after prune: $(cat "$work/s3-verify-pruned.out")"
  grep -q '^esbuild: sequence 14, 5 releases' "$work/s3-verify-pruned.out" || die "verify after prune: $(cat "$work/s3-verify-pruned.out")"
  ! grep -q '^note: no chain of patches' "$work/s3-verify-pruned.out" || die "a kept version has no patch route: $(cat "$work/s3-verify-pruned.out")"
  # The same prune on a copy of the local repository, for its report.
  cp -a "$repos/esbuild" "$work/pruned-local"
  prune_out=$("$mkdelta" prune --repo "$work/pruned-local" --key "$work/k.key" --keep 5 | tail -n1)
  loc_after=$(find "$work/pruned-local" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  grep -qF -- "-> $loc_after bytes" <<<"$prune_out" || die "prune reported '$prune_out', the directory holds $loc_after bytes"
  loc_verify=$("$mkdelta" verify --repo "$work/pruned-local" --pubkey "$work/k.pub") || die "verify of the pruned local copy: $loc_verify"
  ! grep -q '^note: no chain' <<<"$loc_verify" || die "local prune: a kept version has no patch route: $loc_verify"
  fullsize=$(stat -c %s "$repos/esbuild/archives/esbuild-0.25.12.tar.zst")
  for v in 0.25.8 0.25.9 0.25.10 0.25.11; do
    dir=$work/apps/esbuild-kept
    install_app esbuild "$v" "$dir"
    want=$(plan esbuild "$dir" "$base/s3/esbuild" "$v" 0.25.12)
    [ "$want" -lt $((fullsize / 2)) ] || die "$v -> 0.25.12 after prune plans $want bytes: not a patch route (full archive $fullsize)"
    update esbuild "$dir" "$base/s3/esbuild" >"$work/s3-kept.out" 2>&1 || { cat "$work/s3-kept.out" >&2; die "update $v -> 0.25.12 after prune failed"; }
    assert_tree "$dir" "$corpus/esbuild/0.25.12"
  done
  log "OK pruned bucket: $s3_before -> $s3_after bytes; local: $prune_out; kept 0.25.8..0.25.11 update to 0.25.12 exactly"

  phase "object store: v2 on the bucket (migrate, rotate the timestamp key, refresh), a v2 client through nginx"
  "$mkdelta" keygen -o "$work/s3root" >/dev/null
  "$mkdelta" keygen -o "$work/s3ts" >/dev/null
  "$mkdelta" keygen -o "$work/s3ts2" >/dev/null
  "$mkdelta" migrate --repo "$(s3repo esbuild)" --root-key "$work/s3root.key" --release-key "$work/k.key" \
    --timestamp-key "$work/s3ts.key" >"$work/s3-migrate.out" 2>&1 || die "migrate on the bucket: $(cat "$work/s3-migrate.out")"
  curl -fsS -o "$work/s3-root1.json" "$base/s3/esbuild/root/1.json" || die "root/1.json not served from the bucket"
  curl -fsSI "$base/s3/esbuild/root/1.json" | grep -qi '^cache-control: public, max-age=31536000, immutable' || die "no immutable Cache-Control on root/1.json"
  curl -fsSI "$base/s3/esbuild/timestamp.json" | grep -qi '^cache-control: public, max-age=60' || die "no short Cache-Control on timestamp.json"
  "$mkdelta" key rotate --repo "$(s3repo esbuild)" --role timestamp --old "$work/s3ts.pub" --pubkey "$work/s3ts2.pub" \
    --key "$work/s3root.key" --key "$work/s3ts2.key" >"$work/s3-rotate.out" 2>&1 || die "key rotate on the bucket: $(cat "$work/s3-rotate.out")"
  "$mkdelta" refresh -q --repo "$(s3repo esbuild)" --key "$work/s3ts2.key" || die "refresh on the bucket"
  ! "$mkdelta" refresh -q --repo "$(s3repo esbuild)" --key "$work/s3ts.key" 2>/dev/null || die "refresh with the rotated-out key was accepted"
  "$mkdelta" verify --repo "$(s3repo esbuild)" --pubkey "$work/k.pub" >"$work/s3-verify-v2.out" || die "verify of the v2 bucket: $(cat "$work/s3-verify-v2.out")"
  dir=$work/apps/esbuild-v2
  install_app esbuild 0.25.11 "$dir"
  before=$(lines "$ngx/s3.log")
  "$deltaup" update --app-dir "$dir" --server "$base/s3/esbuild" --root "$work/s3-root1.json" --app esbuild --yes --no-reexec \
    >"$work/s3-v2-update.out" 2>&1 || { cat "$work/s3-v2-update.out" >&2; die "v2 update from the bucket failed"; }
  assert_tree "$dir" "$corpus/esbuild/0.25.12"
  tail -n "+$((before + 1))" "$ngx/s3.log" | awk '{ print $2 }' >"$work/s3-v2-paths"
  grep -qx '/s3/esbuild/root/2.json' "$work/s3-v2-paths" && grep -qx '/s3/esbuild/timestamp.json' "$work/s3-v2-paths" ||
    die "the client did not walk root/2.json and read timestamp.json: $(tr '\n' ' ' <"$work/s3-v2-paths")"
  ! grep -qx '/s3/esbuild/manifest.json' "$work/s3-v2-paths" || die "the v2 client read manifest.json"
  v2_note="migrate, key rotate --role timestamp, refresh on the bucket; 0.25.11 → 0.25.12 by a client shipping root/1.json (walked root/2.json, read timestamp.json, not manifest.json), tree byte-exact"
  log "OK v2 on the bucket: $v2_note"

  cat >>"$results" <<MD

## Object store: versitygw (S3-compatible) behind nginx

Versity S3 Gateway (\`go install …/versitygw@v1.8.0\`; it reports version "$("$vgw" --version 2>&1 | head -n1 | awk '{print $NF}')") (posix backend) on loopback, written to by
\`mkdelta publish --repo 's3://rel/PREFIX?endpoint=…&region=us-east-1&use_path_style=true'\`, read by
\`deltaup\` through nginx \`proxy_pass\` (a CDN in front of the bucket, anonymous public-read policy).

| what | figure |
|---|---:|
| 13 publishes of esbuild 0.25.0 … 0.25.12 into a fresh prefix | $(secs "$s3_clean_ms") |
| the same 13 into a local directory, alternating with them | $(secs "$local_again_ms") |
| ratio bucket / directory (target ≤ 1.2) | $(awk -v a="$s3_clean_ms" -v b="$local_again_ms" 'BEGIN { printf "%.2f", a / b }') |
| 0.25.0 → 0.25.12 through nginx from the bucket | $(kb "$got") artifact bytes = the plan, tree byte-exact |
| publish of 0.25.12 killed with SIGKILL after a random 0.5–3 s | $killed_at; bucket verified with the previous release, next publish completed |
| two publishers at once | the second refused: lease held |
| \`prune --keep 5\` (bucket) | $(kb "$s3_before") → $(kb "$s3_after") bytes; 0.25.8 … 0.25.11 update to 0.25.12 by patches |
| \`prune --keep 5\` (local copy), as reported | $prune_out |
| repository v2 on the bucket | $v2_note |
MD
fi

if [ -n "$load_section" ]; then printf '\n%s\n' "$load_section" >>"$results"; fi

phase "done"
printf '\n== e2e: timings\n'
printf '%s\n' "${timings[@]}"
printf '%5ds  total\n' $((SECONDS - t0))
echo "e2e: PASSED"
