#!/bin/bash
# build-image.sh — the UML guest image of the v2 lane, built once per recipe.
#
# Prints the path of $UML_CACHE/guest-KEY.img, building it first when it is
# missing. KEY hashes the recipe (packages.txt, this script, image/) and the
# installed user-mode-linux version, so changing any of them builds a new
# image; images of other recipes are removed after a day. Runs as root
# (mmdebstrap, chroot, mke2fs).
#
# The image: Debian bookworm minbase with packages.txt, systemd as init,
# iptables-legacy (the UML kernel has no nf_tables ipv4 family), the UML
# kernel's modules, a user `tester` (uid 1000, subordinate IDs, linger) and
# the boot unit from image/ that runs the lane named on the command line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${UML_CACHE:-$repo/.cache/uml}
suite=bookworm
size=4G

[ "$(id -u)" -eq 0 ] || { echo "build-image.sh runs as root" >&2; exit 1; }
command -v mmdebstrap mke2fs linux.uml >/dev/null || { echo "missing mmdebstrap, e2fsprogs or user-mode-linux (scripts/host-setup.sh installs them)" >&2; exit 1; }

uml_version=$(dpkg-query -W -f='${Version}' user-mode-linux)
key=$( (cd "$here" && cat packages.txt build-image.sh image/*; echo "$uml_version") | sha256sum | cut -c1-16)
img=$cache/guest-$key.img
[ -s "$img" ] && { echo "$img"; exit 0; }

# One build at a time (worktrees share .cache); the winner's image serves
# the others.
mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9
[ -s "$img" ] && { echo "$img"; exit 0; }
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
packages=$(grep -v '^#' "$here/packages.txt" | grep -v '^$' | paste -sd, -)

echo "building UML guest image $img (mmdebstrap $suite, several minutes) ..." >&2
start=$(date +%s)
mmdebstrap --quiet --variant=minbase --include="$packages" \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	"$suite" "$rootfs" >&2

in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# The kernel has iptables' legacy tables only.
in_root update-alternatives --set iptables /usr/sbin/iptables-legacy >&2
in_root update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >&2

# Kernel modules of the UML kernel, indexed for modprobe.
kver=$(ls /usr/lib/uml/modules)
mkdir -p "$rootfs/lib/modules"
cp -a "/usr/lib/uml/modules/$kver" "$rootfs/lib/modules/"
in_root depmod "$kver"

# The lingering test user; useradd gives it /etc/subuid and /etc/subgid ranges.
in_root useradd -m -u 1000 -s /bin/bash tester
mkdir -p "$rootfs/var/lib/systemd/linger"
touch "$rootfs/var/lib/systemd/linger/tester"

echo crib-uml >"$rootfs/etc/hostname"
echo "127.0.1.1 crib-uml" >>"$rootfs/etc/hosts"
echo "/dev/ubda / ext4 rw,noatime 0 1" >"$rootfs/etc/fstab"

# No consoles to log in on, no timers: the guest runs one unit and stops.
for unit in getty@tty1.service serial-getty@ttyS0.service console-getty.service \
	apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
	systemd-timesyncd.service docker-registry.service; do
	ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done

install -m 0644 "$here/image/crib-lane.service" "$rootfs/etc/systemd/system/crib-lane.service"
install -m 0755 "$here/image/crib-lane-boot" "$rootfs/usr/local/sbin/crib-lane-boot"
mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/crib-lane.service "$rootfs/etc/systemd/system/multi-user.target.wants/crib-lane.service"

rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
mke2fs -q -t ext4 -d "$rootfs" "$work/guest.img" "$size"
mv "$work/guest.img" "$img"
# Images of older recipes, unless a lane may still boot one (a day).
find "$cache" -maxdepth 1 -name 'guest-*.img' ! -name "${img##*/}" -mmin +1440 -delete
echo "built $img in $(($(date +%s) - start))s" >&2
echo "$img"
