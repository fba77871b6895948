#!/usr/bin/env bash
# What a check costs on the wire against a real nginx, repository v1 against
# v2 (docs/FORMAT.md, "Repository v2: roles"):
#
#   e2e/poll.sh           (DELTAUP_CORPUS overrides the corpus; NGINX the binary)
#
# Publishes prettier 3.3.0..3.3.3, installs 3.3.3, then runs `deltaup check`
# (no update) three times as a v1 client (--pubkey) and three times as a v2
# client (--root, after `mkdelta migrate`), and reports, from nginx's access
# log ($bytes_sent: status line, headers and body; $request_length: the
# request), the bytes of each check. The v2 target: a check with no update
# is at most 1 KiB on the wire (both directions) once the client has seen
# the repository, and an update check (3.3.3 published, the client holding
# the index before it: a delta) at most 4 KiB. Skips (exit 0) without the corpus or nginx.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
corpus=${DELTAUP_CORPUS:-$HOME/.cache/deltaup-corpus}
versions=(3.3.0 3.3.1 3.3.2 3.3.3)
skip() { echo "poll: SKIP: $*"; exit 0; }
die() { echo "poll: FAIL: $*" >&2; exit 1; }
for v in "${versions[@]}"; do [ -d "$corpus/prettier/$v" ] || skip "no corpus at $corpus/prettier/$v"; done
nginx=${NGINX:-$(command -v nginx || true)}
if [ -z "$nginx" ] && [ -x /usr/sbin/nginx ]; then nginx=/usr/sbin/nginx; fi
[ -n "$nginx" ] && [ -x "$nginx" ] || skip "nginx not found"

work=$(mktemp -d "${TMPDIR:-/tmp}/deltaup-poll.XXXXXX")
chmod 755 "$work"
ngx=$work/nginx
cleanup() {
  local rc=$?
  if [ -s "$ngx/nginx.pid" ]; then kill "$(cat "$ngx/nginx.pid")" 2>/dev/null || true; fi
  if [ "${E2E_KEEP:-}" = 1 ]; then echo "poll: kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/bin/" ./cmd/mkdelta ./cmd/deltaup)
mk=$work/bin/mkdelta
up=$work/bin/deltaup
cd "$work"
for k in rel rootA rootB ts; do "$mk" keygen -o "$k" >/dev/null; done
for v in 3.3.0 3.3.1 3.3.2; do
  "$mk" publish -q --repo repo --app prettier --version "$v" --key rel.key "$corpus/prettier/$v"
done
mkdir empty
"$mk" -q empty "$corpus/prettier/3.3.2" -o install.dupb
"$up" patch -q empty install.dupb -o app1
"$up" patch -q empty install.dupb -o app2
chmod -R a+rX repo

mkdir -p "$ngx/tmp"
user_line=""
if [ "$(id -u)" -eq 0 ]; then user_line="user $(id -un) $(id -gn);"; fi
port=""
for _ in $(seq 20); do
  p=$((20000 + RANDOM % 40000))
  cat >"$ngx/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon on;
pid $ngx/nginx.pid;
error_log $ngx/error.log;
events { worker_connections 64; }
http {
  types { application/json json; application/zstd zst; application/gzip gz; }
  default_type application/octet-stream;
  client_body_temp_path $ngx/tmp/body;
  proxy_temp_path $ngx/tmp/proxy;
  fastcgi_temp_path $ngx/tmp/fastcgi;
  uwsgi_temp_path $ngx/tmp/uwsgi;
  scgi_temp_path $ngx/tmp/scgi;
  log_format poll '\$request_uri \$status \$request_length \$bytes_sent';
  server {
    listen 127.0.0.1:$p;
    root $work/repo;
    access_log $ngx/access.log poll;
    location /r100/ { alias $work/repo100/; }
  }
}
CONF
  if "$nginx" -p "$ngx" -c "$ngx/nginx.conf" -e "$ngx/error.log" 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || die "nginx did not start"
for _ in $(seq 50); do [ -s "$ngx/nginx.pid" ] && break; sleep 0.1; done
base=http://127.0.0.1:$port

# measure LABEL CMD...: run one check and print its requests and bytes.
measure() {
  local label=$1
  shift
  : >"$ngx/access.log"
  local rc=0
  "$@" >/dev/null || rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || die "$label: check failed ($rc)"
  sleep 0.2 # nginx writes the log line after the response
  awk -v l="$label" '{ req += $3; resp += $4; n++; paths = paths " " $1 "(" $2 ")" }
    END { printf "%-34s %2d requests, %6d bytes sent by nginx, %5d bytes of requests, %6d total:%s\n", l, n, resp, req, req + resp, paths }' "$ngx/access.log"
}
v1=("$up" check --app-dir app1 --server "$base" --pubkey rel.pub --app prettier)
measure "v1 first check" "${v1[@]}"
measure "v1 second check (no update)" "${v1[@]}"
echo "v1 manifest.json: $(stat -c %s repo/manifest.json) bytes for 3 releases"

"$mk" migrate --repo repo --root-key rootA.key --root-key rootB.key --root-threshold 2 --release-key rel.key --timestamp-key ts.key >/dev/null
chmod -R a+rX repo
cp repo/root/1.json root1.json
v2=("$up" check --app-dir app2 --server "$base" --root root1.json --app prettier)
measure "v2 first check" "${v2[@]}"
measure "v2 second check (no update)" "${v2[@]}"
out=$(measure "v2 third check (no update)" "${v2[@]}")
echo "$out"
echo "v2 timestamp.json: $(stat -c %s repo/timestamp.json) bytes"

# 3.3.3 is published: an update check of each client.
"$mk" publish -q --repo repo --app prettier --version 3.3.3 --key rel.key --timestamp-key ts.key "$corpus/prettier/3.3.3"
chmod -R a+rX repo
measure "v1 update check (3.3.2 -> 3.3.3)" "${v1[@]}"
upd=$(measure "v2 update check (3.3.2 -> 3.3.3)" "${v2[@]}")
echo "$upd"
idx=$(sed -n 's/.*"index":{"sequence":\([0-9]*\).*/\1/p' repo/timestamp.json)
echo "v1 manifest.json: $(stat -c %s repo/manifest.json) bytes, v2 index manifests/$idx.json: $(stat -c %s "repo/manifests/$idx.json") bytes for 4 releases; delta $(stat -c %s "repo/deltas/$((idx - 1))-$idx.json") bytes; file list of 3.3.3 $(stat -c %s repo/filelists/prettier-3.3.3.files.json) bytes"
echo "compact index index/$idx.json: $(stat -c %s "repo/index/$idx.json") bytes for 4 releases; its delta (carrying the release document of 3.3.3) $(stat -c %s "repo/index/$((idx - 1))-$idx.delta.json") bytes"

# 100 releases (POLL_RELEASES, 0 skips): a tiny tree each (what an index
# holds per release does not depend on the tree's size but for the width
# of its numbers; the file list, fetched by the update itself, does).
n=${POLL_RELEASES:-100}
if [ "$n" -gt 1 ]; then
  for i in $(seq 0 $((n - 2))); do
    mkdir -p "t/$i/bin"
    printf 'app %s\n' "$i" >"t/$i/bin/app"
    head -c 4096 /dev/zero | tr '\0' "$((i % 10))" >"t/$i/data"
    "$mk" publish -q --repo repo100 --app prettier --version "1.0.$i" --key rel.key "t/$i"
  done
  "$mk" migrate --repo repo100 --root-key rootA.key --root-key rootB.key --root-threshold 2 --release-key rel.key --timestamp-key ts.key >/dev/null
  "$mk" -q empty "t/$((n - 2))" -o install100.dupb
  "$up" patch -q empty install100.dupb -o app3
  chmod -R a+rX repo100
  cp repo100/root/1.json root100.json
  v3=("$up" check --app-dir app3 --server "$base/r100" --root root100.json --app prettier)
  measure "v2 first check, $((n - 1)) releases" "${v3[@]}"
  out100=$(measure "v2 check (no update), $((n - 1)) rel." "${v3[@]}")
  echo "$out100"
  mkdir -p "t/$((n - 1))/bin"
  printf 'app %s\n' "$((n - 1))" >"t/$((n - 1))/bin/app"
  head -c 4096 /dev/zero | tr '\0' x >"t/$((n - 1))/data"
  "$mk" publish -q --repo repo100 --app prettier --version "1.0.$((n - 1))" --key rel.key --timestamp-key ts.key "t/$((n - 1))"
  chmod -R a+rX repo100
  upd100=$(measure "v2 update check, $n releases" "${v3[@]}")
  echo "$upd100"
  i100=$(sed -n 's/.*"index":{"sequence":\([0-9]*\).*/\1/p' repo100/timestamp.json)
  c1=$(stat -c %s "repo100/index/$i100.json")
  c0=$(stat -c %s "repo100/index/$((i100 - 1)).json")
  echo "$n releases: full index manifests/$i100.json $(stat -c %s "repo100/manifests/$i100.json") bytes; compact index index/$i100.json $c1 bytes ($((c1 / n)) per release; the last release added $((c1 - c0))); compact delta $(stat -c %s "repo100/index/$((i100 - 1))-$i100.delta.json") bytes; full-index delta $(stat -c %s "repo100/deltas/$((i100 - 1))-$i100.json") bytes"
  [ $((c1 - c0)) -le 300 ] || die "the compact index grew by $((c1 - c0)) bytes with release $n, more than 300"
  u100=$(echo "$upd100" | sed -n 's/.*, *\([0-9]*\) total:.*/\1/p')
  [ "$u100" -le 4096 ] || die "a v2 update check at $n releases cost $u100 bytes on the wire, more than 4 KiB"
  echo "poll: OK: at $n releases a v2 update check costs $u100 bytes on the wire (target <= 4096), the compact index grows by $((c1 - c0)) bytes per release (target <= 300)"
fi
total=$(echo "$out" | sed -n 's/.*, *\([0-9]*\) total:.*/\1/p')
[ "$total" -le 1024 ] || die "a v2 check with no update cost $total bytes on the wire, more than 1 KiB"
echo "poll: OK: a v2 check with no update costs $total bytes on the wire (target <= 1024)"
utotal=$(echo "$upd" | sed -n 's/.*, *\([0-9]*\) total:.*/\1/p')
[ "$utotal" -le 4096 ] || die "a v2 update check cost $utotal bytes on the wire, more than 4 KiB"
echo "poll: OK: a v2 update check costs $utotal bytes on the wire (target <= 4096, plus the file list the update then fetches)"
