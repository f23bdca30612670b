#!/bin/sh
# Prepares this machine, as root, for running crib rootless and for its
# tests: installs the Debian packages crib needs, creates the unprivileged
# user, and fixes device modes that Debian leaves at 0600 on some machines.
# Idempotent: every step checks before it acts.
#
# usage: scripts/host-setup.sh USER
set -eu

user=${1:?usage: host-setup.sh USER}

if [ "$(id -u)" -ne 0 ]; then
	echo "host-setup.sh must run as root; as a normal user ask an admin to run:" >&2
	echo "  sudo apt-get install -y $(sed -n 's/^packages="\(.*\)"$/\1/p' "$0")" >&2
	exit 1
fi

# The packages crib uses at run time and in its tests (see README);
# user-mode-linux, mmdebstrap and e2fsprogs build and boot the guest of the
# cgroup v2 + systemd lane (make test-v2, test/uml).
packages="runc crun conmon catatonit uidmap slirp4netns passt fuse-overlayfs containernetworking-plugins iptables util-linux procps curl ca-certificates docker-registry skopeo busybox user-mode-linux mmdebstrap e2fsprogs"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# HOST_SETUP_PACKAGES=no: a machine whose packages come with its image and
# that has no package source (the v2 lane's offline guest, test/uml) skips
# the installation; crib doctor says what a missing one costs.
if [ -n "$missing" ] && [ "${HOST_SETUP_PACKAGES:-yes}" = no ]; then
	echo "not installing (HOST_SETUP_PACKAGES=no):$missing"
elif [ -n "$missing" ]; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 || {
		apt-get update >/dev/null
		apt-get install -y --no-install-recommends $missing >/dev/null
	}
fi

# useradd writes /etc/subuid and /etc/subgid ranges (SUB_UID_COUNT=65536).
created=no
if ! id "$user" >/dev/null 2>&1; then
	useradd -m -s /bin/sh "$user"
	echo "created user $user"
	created=yes
fi
# crib's user namespace maps the user's uid and these ranges; pods with
# their own user namespace (hostUsers: false) take 65536 ids each from it,
# above the first 65536. need = room for the kubelet's default 110 such
# pods (crib doctor reports the room). A user with fewer ids and no crib
# state yet (just created, or never ran crib) gets one range instead of
# the old: a pod's mapping that crosses from one range to the next shows
# as two lines in its uid_map (critest's user-namespace spec wants one).
# A user whose crib state exists keeps the ids its stored images use and
# gets a second range appended. New ranges start after every range in
# the file, so no two users share ids.
need=$((111 * 65536))
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
state=$(ls -d "$home"/.local/share/crib* 2>/dev/null | head -1)
for f in /etc/subuid /etc/subgid; do
	touch "$f"
	have=$(awk -F: -v u="$user" -v n="$uid" '$1 == u || $1 == n {t += $3} END {print t + 0}' "$f")
	if [ "$have" -lt "$need" ] && { [ "$created" = yes ] || [ -z "$state" ]; }; then
		sed -i "/^$user:/d; /^$uid:/d" "$f"
		echo "replacing $user's $have ids in $f by one range (no crib state under $home/.local/share)"
	fi
	have=$(awk -F: -v u="$user" -v n="$uid" '$1 == u || $1 == n {t += $3} END {print t + 0}' "$f")
	if [ "$have" -lt "$need" ]; then
		count=$((need - have))
		start=$(awk -F: 'BEGIN {m = 100000} NF == 3 {e = $2 + $3; if (e > m) m = e} END {print m}' "$f")
		start=$(( (start + 65535) / 65536 * 65536 ))
		echo "$user:$start:$count" >>"$f"
		echo "added $user:$start:$count to $f ($have ids before, $need wanted)"
	fi
done

# slirp4netns/pasta need /dev/net/tun and fuse-overlayfs /dev/fuse; some
# machines ship them 0600 (usual distributions: 0666).
for dev in /dev/net/tun /dev/fuse; do
	if [ -c "$dev" ] && [ "$(stat -c %a "$dev")" != 666 ]; then
		chmod 0666 "$dev"
	fi
done

# No systemd-logind here: make the XDG runtime directory pam_systemd would.
rundir=/run/user/$uid
if [ ! -d "$rundir" ]; then
	install -d -m 0700 -o "$user" -g "$(id -g "$user")" "$rundir"
fi
