package doctor

import (
	"slices"
	"strings"
)

// family is a group of distributions sharing a package manager and
// package names.
type family int

const (
	familyUnknown family = iota
	familyDebian
	familyFedora
	familyArch
	familySUSE
	familyAlpine
)

func familyOf(ids []string) family {
	for _, id := range ids {
		switch id {
		case "debian", "ubuntu":
			return familyDebian
		case "fedora", "rhel", "centos":
			return familyFedora
		case "arch":
			return familyArch
		case "suse", "opensuse":
			return familySUSE
		case "alpine":
			return familyAlpine
		}
	}
	if slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(id, "opensuse") }) {
		return familySUSE
	}
	return familyUnknown
}

// packageName is the package providing what crib needs (a program, or
// "cni-plugins"/"container-selinux") in a family's repositories.
func packageName(what string, f family) string {
	switch what {
	case "newuidmap":
		switch f {
		case familyFedora:
			return "shadow-utils"
		case familyArch, familySUSE:
			return "shadow"
		case familyAlpine:
			return "shadow-uidmap"
		}
		return "uidmap"
	case "pasta":
		return "passt"
	case "cni-plugins":
		switch f {
		case familyArch, familySUSE, familyAlpine:
			return "cni-plugins"
		}
		return "containernetworking-plugins"
	case "container-selinux":
		return "container-selinux"
	}
	return what // runc, crun, conmon, slirp4netns, fuse-overlayfs
}

// fixer writes fix commands for one host: with sudo unless already root,
// with the host's package manager.
type fixer struct {
	rootful bool
	family  family
}

// sudo prefixes a command that needs root.
func (f fixer) sudo(cmd string) string {
	if f.rootful {
		return cmd
	}
	return "sudo " + cmd
}

// install is the command installing the package that provides what.
func (f fixer) install(what string) string {
	pkg := packageName(what, f.family)
	switch f.family {
	case familyFedora:
		return f.sudo("dnf install " + pkg)
	case familyArch:
		return f.sudo("pacman -S " + pkg)
	case familySUSE:
		return f.sudo("zypper install " + pkg)
	case familyAlpine:
		return f.sudo("apk add " + pkg)
	}
	// Unknown distributions get the Debian command, the one this project
	// is tested on; the package name tells other users what to look for.
	return f.sudo("apt-get install " + pkg)
}

// and joins the non-empty commands with &&.
func and(cmds ...string) string {
	var out []string
	for _, c := range cmds {
		if c != "" {
			out = append(out, c)
		}
	}
	return strings.Join(out, " && ")
}
