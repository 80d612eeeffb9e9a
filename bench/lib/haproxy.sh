# Sourced by bench/run and bench/instructions: the HAProxy sidecar pair they measure murmur
# against, written once so that both measure the same thing.
#
#   haproxy_configs DIR LABEL A_PORT B_PORT NGINX_PORT ALPN
#
# writes DIR/LABEL-a.cfg (plain HTTP in on A_PORT, out over TLS 1.3 with a client certificate
# to B) and DIR/LABEL-b.cfg (TLS in on B_PORT, requiring a client certificate; out to nginx).
# ALPN is "" (HTTP/1.1 between the two) or "alpn h2" (HTTP/2 over one TLS connection). The
# certificates are DIR/certs/a.pem and b.pem (haproxy_pems, below), the CA DIR/ca/ca.crt.
haproxy_configs() {
  local dir=$1 label=$2 a=$3 b=$4 nginx=$5 alpn=$6
  local common="global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always"
  cat >"$dir/$label-a.cfg" <<CFG
$common
frontend app
  bind 127.0.0.1:$a
  default_backend mesh
backend mesh
  server b 127.0.0.1:$b ssl crt $dir/certs/a.pem ca-file $dir/ca/ca.crt verify required ssl-min-ver TLSv1.3 $alpn
CFG
  cat >"$dir/$label-b.cfg" <<CFG
$common
frontend mesh
  bind 127.0.0.1:$b ssl crt $dir/certs/b.pem ca-file $dir/ca/ca.crt verify required ssl-min-ver TLSv1.3 $alpn
  default_backend app
backend app
  server nginx 127.0.0.1:$nginx
CFG
}

# Writes DIR/certs/a.pem and b.pem, each certificate followed by its key, from the .crt and .key
# files beside them: the form HAProxy's `crt` takes.
haproxy_pems() {
  local dir=$1 n
  for n in a b; do
    cat "$dir/certs/$n.crt" "$dir/certs/$n.key" >"$dir/certs/$n.pem"
  done
}
