#!/usr/bin/env bash
# Runs three nodes from exported image roots (deploy/container/test prepares them) inside the
# network, mount and PID namespaces deploy/container/test created: see that script's header.
#
#   mesh.sh WORK UID GID WORKDIR [IMAGE_ENV...]
set -euo pipefail
work="$1"; uid="$2"; gid="$3"; workdir="$4"; shift 4
image_env=("$@")
ip link set lo up
for n in a b c; do
  mount --bind "$work/$n/etc" "$work/$n/rootfs/etc/murmur"
  mount -o remount,bind,ro "$work/$n/rootfs/etc/murmur"
  mount --bind "$work/$n/hosts" "$work/$n/rootfs/etc/hosts"
  mount --bind "$work/$n/resolv.conf" "$work/$n/rootfs/etc/resolv.conf"
done
dnsmasq --keep-in-foreground --user=root --log-facility=- --no-resolv --no-hosts --addn-hosts="$work/dns-hosts" \
  --listen-address=127.0.0.53 --bind-interfaces --pid-file= 2>"$work/dns.log" &
# A node resolves its seeds at start and then only every 60 s: have DNS up first.
deadline=$((SECONDS + 10))
until ss -Hlun src 127.0.0.53:53 | grep -q .; do
  [ $SECONDS -lt $deadline ] || { echo "container/test: dnsmasq did not start" >&2; exit 1; }
  sleep 0.1
done
# As a runtime starts a container: its root, working directory, user and environment.
#   container NODE [VAR=VALUE ...] -- ARGS...
container() {
  local n="$1" vars=()
  shift
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done
  shift
  env -i "${image_env[@]}" "${vars[@]}" \
    unshare --root="$work/$n/rootfs" --wd="$workdir" --setuid "$uid" --setgid "$gid" /usr/bin/murmur "$@"
}

version="$(container a -- --version)"
echo "container/test: murmur --version in the image: $version"
case "$version" in "murmur "*) ;; *) echo "container/test: unexpected --version output" >&2; exit 1 ;; esac

(cd "$work/app" && exec python3 -m http.server --bind 127.0.0.10 8080 >/dev/null 2>&1) &
container a MURMUR_NAME=a MURMUR_LISTEN=127.0.0.2:7420 MURMUR_ADMIN=127.0.0.2:7422 \
  MURMUR_OUTBOUND=127.0.0.2:7421 \
  MURMUR_CA=/etc/murmur/ca.crt MURMUR_CERT=/etc/murmur/a.crt MURMUR_KEY=/etc/murmur/a.key \
  -- run 2>"$work/a.log" &
job_a=$!
container b -- run --config /etc/murmur/node.toml 2>"$work/b.log" &
job_b=$!
container c MURMUR_NAME=c MURMUR_LISTEN=127.0.0.4:7420 MURMUR_ADMIN=127.0.0.4:7422 \
  MURMUR_OUTBOUND=127.0.0.4:7421 MURMUR_SEEDS=seeds.mesh.test:7420 \
  MURMUR_CA=/etc/murmur/ca.crt MURMUR_CERT=/etc/murmur/c.crt MURMUR_KEY=/etc/murmur/c.key \
  -- run 2>"$work/c.log" &
job_c=$!
show_logs() {
  local status=$?
  [ $status -eq 0 ] && return
  for log in a b c dns; do echo "--- $log.log"; tail -20 "$work/$log.log"; done >&2
  exit $status
}
trap show_logs EXIT

# The node processes themselves (the jobs above are the shells that started them).
node_pid() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$work/$1/rootfs/usr/bin/murmur" ] && { echo "${p#/proc/}"; return; }
  done
  return 1
}
pids=""
deadline=$((SECONDS + 10))
for n in a b c; do
  until pid="$(node_pid $n)"; do
    [ $SECONDS -lt $deadline ] || { echo "container/test: node $n is not running" >&2; exit 1; }
    sleep 0.1
  done
  pids="$pids $pid"
done
for pid in $pids; do
  ids="$(grep -E "^(Uid|Gid|Groups):" /proc/$pid/status | tr -s "\t " " " | sed "s/ $//" | tr "\n" ";")"
  [ "$ids" = "Uid: $uid $uid $uid $uid;Gid: $gid $gid $gid $gid;Groups:;" ] \
    || { echo "container/test: node $pid runs as $ids, not $uid:$gid without groups" >&2; exit 1; }
done
# Every node is alive (the CLI from the image, as `kubectl exec` would run it), and ready.
container a -- members --admin 127.0.0.2:7422 --wait-alive 3
deadline=$((SECONDS + 60))
for ip in 127.0.0.2 127.0.0.3 127.0.0.4; do
  until [ "$(curl -s -o /dev/null -w "%{http_code}" http://$ip:7422/readyz)" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { echo "container/test: $ip not ready within 60 s" >&2; exit 1; }
    sleep 0.2
  done
done
rss="$(awk '/^VmRSS/ {print $2}' /proc/$(node_pid a)/status)"
# A request from c, over QUIC and mutual TLS, to the app behind b (b publishes web once joined).
until body="$(curl -sf -H "Host: web" http://127.0.0.4:7421/hello.txt)"; do
  [ $SECONDS -lt $deadline ] || { echo "container/test: no answer through the mesh within 60 s" >&2; exit 1; }
  sleep 0.2
done
[ "$body" = "served from behind node b" ] || { echo "container/test: wrong answer: $body" >&2; exit 1; }
echo "container/test: request from c across the mesh answered: $body; node a idle RSS ${rss} KiB"

kill -TERM $pids
for n in a b c; do
  deadline=$((SECONDS + 45))
  while node_pid $n >/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "container/test: node $n still running 45 s after SIGTERM" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '"drained"' "$work/$n.log" || { echo "container/test: node $n did not drain" >&2; exit 1; }
done
for job in $job_a $job_b $job_c; do
  wait $job || { echo "container/test: a node exited with status $? after SIGTERM" >&2; exit 1; }
done
ls "$work/b/rootfs/var/lib/murmur" | grep -q . || { echo "container/test: node b wrote no state" >&2; exit 1; }
echo "container/test: every node drained and exited; state in /var/lib/murmur: $(ls "$work/b/rootfs/var/lib/murmur" | tr "\n" " ")"
