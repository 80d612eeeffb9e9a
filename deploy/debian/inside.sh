#!/bin/sh
# Runs inside the throw-away Debian root (see deploy/debian/test): installs /tmp/murmur.deb, runs
# the node as the packaged user, removes and purges the package, and compares every path with
# the state before the install.
set -eu
fail() { echo "debian/inside: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin

# Paths that dpkg and this script legitimately change: package databases, logs, caches.
snapshot() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /var/lib/dpkg -o -path /var/log -o -path /var/cache -o -path /var/lib/apt \) -prune \
    -o -print | grep -Ev '^/etc/(passwd|group|shadow|gshadow)-$' | sort
}
snapshot > /tmp/before

dpkg -i /tmp/murmur.deb
dpkg-query -W -f='${Status} ${Version}\n' murmur | grep -q '^install ok installed ' || fail "not installed"

# The user: a system account without a login shell, home in the data directory.
entry="$(getent passwd murmur)" || fail "no murmur user"
uid="$(echo "$entry" | cut -d: -f3)"
[ "$uid" -lt 1000 ] || fail "murmur is not a system user: $entry"
echo "$entry" | grep -Eq ':/var/lib/murmur:/(usr/)?s?bin/nologin$' || fail "murmur user: $entry"
getent group murmur >/dev/null || fail "no murmur group"

# The unit, exactly as shipped; installed, not enabled; valid where it is installed.
unit=/usr/lib/systemd/system/murmur.service
cmp "$unit" /tmp/murmur.service.expected || fail "installed unit differs from deploy/systemd/murmur.service"
[ ! -e /etc/systemd/system/multi-user.target.wants/murmur.service ] || fail "unit enabled at install"
out="$(systemd-analyze verify --man=no "$unit" 2>&1)" || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify said: $out"
[ -f /usr/lib/sysusers.d/murmur.conf ] || fail "no sysusers file"

# The binary and the config's permissions.
version="$(/usr/bin/murmur --version)"
echo "debian/inside: installed $version"
[ "$(stat -c '%U:%G %a' /etc/murmur/node.toml)" = "root:murmur 640" ] || fail "node.toml: $(stat -c '%U:%G %a' /etc/murmur/node.toml)"
[ "$(stat -c '%U:%G %a' /etc/murmur)" = "root:murmur 750" ] || fail "/etc/murmur: $(stat -c '%U:%G %a' /etc/murmur)"
grep -q '^#DEBHELPER#' /var/lib/dpkg/info/murmur.postinst && fail "postinst still has the #DEBHELPER# token"

# Run the node as the unit would: user murmur, the packaged config, the data directory that
# StateDirectory= makes. The test's certificates live outside the package's paths.
install -d -o murmur -g murmur -m 0700 /var/lib/murmur
mkdir -p /srv/murmur-test
murmur ca init --dir /srv/murmur-test/ca >/dev/null
murmur cert issue --ca-dir /srv/murmur-test/ca --name vm-1 --out /srv/murmur-test >/dev/null
chown -R murmur:murmur /srv/murmur-test
setpriv --reuid murmur --regid murmur --init-groups \
  /usr/bin/murmur run --config /etc/murmur/node.toml --data-dir /var/lib/murmur \
  --name vm-1 --advertise 127.0.0.1:7420 --ca /srv/murmur-test/ca/ca.crt \
  --cert /srv/murmur-test/vm-1.crt --key /srv/murmur-test/vm-1.key 2>/tmp/node.log &
node=$!
murmur members --wait-alive 1 || { cat /tmp/node.log >&2; fail "the node did not come up"; }
kill -TERM "$node"
wait "$node" || { cat /tmp/node.log >&2; fail "the node did not exit cleanly"; }
[ -s /var/lib/murmur/generation ] || fail "the node wrote no state in /var/lib/murmur"
[ "$(stat -c %U /var/lib/murmur/generation)" = murmur ] || fail "state not owned by murmur"
rm -rf /srv/murmur-test
echo "debian/inside: the node ran as murmur; state: $(ls /var/lib/murmur | tr '\n' ' ')"

# Remove: the binary and unit go; the conffile and the data directory stay.
dpkg -r murmur
[ ! -e /usr/bin/murmur ] && [ ! -e "$unit" ] && [ ! -e /usr/lib/sysusers.d/murmur.conf ] || fail "files left after remove"
[ -f /etc/murmur/node.toml ] || fail "remove deleted the conffile"
[ -s /var/lib/murmur/generation ] || fail "remove deleted the data directory"

# Purge: only the data directory remains of everything the package and the node made.
dpkg --purge murmur
snapshot > /tmp/after
added="$(comm -13 /tmp/before /tmp/after | grep -v '^/var/lib/murmur\(/\|$\)' || true)"
removed="$(comm -23 /tmp/before /tmp/after || true)"
[ -z "$added" ] || fail "left after purge: $added"
[ -z "$removed" ] || fail "purge removed paths that were there before: $removed"
[ -s /var/lib/murmur/generation ] || fail "purge deleted the data directory"
getent passwd murmur >/dev/null && echo "debian/inside: the murmur user stays after purge (Debian keeps system users)"
echo "debian/inside: after purge only the data directory is left: $(comm -13 /tmp/before /tmp/after | tr '\n' ' ')"
