# Sourced by the scripts that train a build on a running mesh (scripts/code-layout under
# callgrind, scripts/profile-train natively): a three-node `murmur demo` stands in for the app
# (its node a's outbound listener and TCP upstream), and two nodes n1 and n2, started from
# config files, join each other; n2 offers the demo as the services `echo` (HTTP) and
# `tcp-echo` (TCP), n1 is the caller: HTTP on 127.0.0.1:17611, TCP on 127.0.0.1:17613, admin
# ports 17612 and 17622.
#
# The caller sets `who` (its name, for messages) and `binary` (absolute path), may set
# `node_runner` (an array: a command the nodes run under, e.g. valgrind), and calls
# training_netns "$0" "$@" first (as root, the rest then runs in a network namespace of its
# own, so no port of the machine is used), then training_begin.

# Runs the calling script again inside a new network namespace (root only); returns there.
training_netns() {
  if [ "$(id -u)" -eq 0 ] && [ -z "${TRAINING_NETNS:-}" ] && command -v unshare >/dev/null \
    && command -v ip >/dev/null; then
    exec env TRAINING_NETNS=1 unshare --net -- "$@"
  fi
  [ -z "${TRAINING_NETNS:-}" ] || ip link set lo up
}

# A work directory, removed with every process started here when the script exits.
training_begin() {
  work=$(mktemp -d)
  pids=()
  trap training_cleanup EXIT
}
training_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
node_runner=()
fail() {
  echo "$who: $*" >&2
  tail -n 20 "$work"/*.log >&2 || true
  exit 1
}
# Waits (up to $1 s, generous: under callgrind a node runs tens of times slower) for a command.
until_ok() {
  local limit=$1
  shift
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

# Starts the demo and writes the two nodes' certificates and configs.
training_setup() {
  "$binary" demo --dir "$work/demo" >"$work/demo.out" 2>"$work/demo.log" &
  pids+=($!)
  until_ok 120 grep -q 'Ctrl-C stops' "$work/demo.out" || fail "the demo did not start"
  local http_app tcp_app
  http_app=$(awk '/node a .*outbound/ { for (i = 1; i < NF; i++) if ($i == "outbound") print $(i + 1) }' "$work/demo.out")
  tcp_app=$(awk '/nc -N/ { for (i = 1; i < NF; i++) if ($i == "-N") print $(i + 1) ":" $(i + 2) }' "$work/demo.out")
  [ -n "$http_app" ] && [ -n "$tcp_app" ] || fail "cannot read the demo's addresses"

  "$binary" ca init --dir "$work/ca" --trust-domain training.local >/dev/null
  "$binary" cert issue --ca-dir "$work/ca" --name n1 --out "$work/certs" >/dev/null
  "$binary" cert issue --ca-dir "$work/ca" --name n2 --service echo --service tcp-echo \
    --out "$work/certs" >/dev/null
  training_config 1 '[[upstream]]
service = "tcp-echo"
listen = "127.0.0.1:17613"'
  training_config 2 "[[service]]
name = \"echo\"
address = \"$http_app\"
protocol = \"http\"
[[service]]
name = \"tcp-echo\"
address = \"$tcp_app\"
protocol = \"tcp\""
}

training_config() { # n, then extra TOML
  cat >"$work/n$1.toml" <<EOF
name = "n$1"
listen = "127.0.0.1:176${1}0"
outbound = "127.0.0.1:176${1}1"
admin = "127.0.0.1:176${1}2"
data_dir = "$work/n$1"
seeds = ["127.0.0.1:17610", "127.0.0.1:17620"]
[tls]
ca = "$work/ca/ca.crt"
cert = "$work/certs/n$1.crt"
key = "$work/certs/n$1.key"
$2
EOF
}

declare -A node
start() { # n
  "${node_runner[@]}" "$binary" run --config "$work/n$1.toml" 2>>"$work/n$1.log" &
  node[$1]=$!
  pids+=($!)
}
stop() { # n: the node writes what it was run under for (a dump, counts) as it exits
  kill -TERM "${node[$1]}"
  wait "${node[$1]}" || true
}
echo_ready() { curl -sf -H 'Host: echo' http://127.0.0.1:17611/hello; }

# Starts both nodes and waits until a request crosses them.
start_both() {
  start 1
  start 2
  until_ok 300 "$binary" members --admin 127.0.0.1:17612 --wait-alive 2 || fail "the nodes did not meet"
  until_ok 300 echo_ready || fail "echo is not reachable through the nodes"
}

# A little of everything: HTTP/1.1, HTTP/2 and TCP through the nodes, a scrape of each, a
# status. Called as `traffic || fail`, where errexit does not apply: each step returns on failure.
traffic() {
  local i reply
  for i in $(seq 1 20); do
    curl -sf -H 'Host: echo' http://127.0.0.1:17611/hello >/dev/null || return 1
    curl -sf --http2-prior-knowledge -H 'Host: echo.mesh' http://127.0.0.1:17611/h2 \
      >/dev/null || return 1
    exec 3<>/dev/tcp/127.0.0.1/17613 || return 1
    printf 'hello over TCP\n' >&3
    read -r -t 30 reply <&3 || true
    exec 3<&-
    [ "$reply" = "hello over TCP" ] || return 1
  done
  curl -sf http://127.0.0.1:17612/metrics >/dev/null || return 1
  curl -sf http://127.0.0.1:17622/metrics >/dev/null || return 1
  "$binary" status --admin 127.0.0.1:17612 >/dev/null
}
