package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/server/rootless"
)

// usernsSupport decides whether pods may have their own user namespace
// (hostUsers: false), and says why not: crib's own namespace must have
// room for at least one pod's 65536 ids beyond its first 65536. (Root file
// systems work on every storage driver: storage chowns a copy of the
// image for the pod's ids.)
func usernsSupport() (bool, string) {
	ok, why, _ := usernsRoom()
	return ok, why
}

// usernsRoom is usernsSupport with the number of pods the range holds.
func usernsRoom() (bool, string, int) {
	size := -1
	for _, f := range []string{"/proc/self/uid_map", "/proc/self/gid_map"} {
		n, err := idMapSize(f)
		if err != nil {
			return false, err.Error(), 0
		}
		if size < 0 || n < size {
			size = n
		}
	}
	pods := idmap.PodCapacity(size)
	if pods == 0 {
		return false, fmt.Sprintf("crib's user namespace has %d ids, no room for a pod's %d beyond the first %d: give crib's user more subordinate ids (scripts/host-setup.sh; crib doctor)", size, idmap.PodIDs, idmap.PodIDs), 0
	}
	return true, fmt.Sprintf("room for %d pods of %d ids in crib's %d", pods, idmap.PodIDs, size), pods
}

func idMapSize(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m, err := idmap.ParseProcMap(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return m.Size(), nil
}

// usernsRootDir is where crib binds user-namespaced containers' root
// file systems (runtime.UsernsRootDir): in crib's own copy of /run when
// it has one, which the host never sees, else under /tmp.
func usernsRootDir(runRoot string) string {
	if rootless.CopiedUp("/run") {
		return runtime.UsernsRootDir("/run", runRoot)
	}
	return runtime.UsernsRootDir("/tmp", runRoot)
}

// usernsStateInfo is crib's configuration as Status info shows it, plus
// "stateDir": a path inside dir (usernsRootDir), made now, so that a
// client can probe that tmpfs as containerd's state directory is probed
// (critest tries an idmapped mount of stateDir's parent before its
// user-namespace specs).
func usernsStateInfo(cfg any, dir string, supported bool, log *slog.Logger) string {
	out := mustJSON(cfg)
	if !supported {
		return out
	}
	if err := runtime.EnsureUsernsRoot(dir); err != nil {
		log.Warn("preparing the user-namespace root directory", "dir", dir, "err", err)
		return out
	}
	var m map[string]any
	if json.Unmarshal([]byte(out), &m) != nil {
		return out
	}
	m["stateDir"] = filepath.Join(dir, "state")
	return mustJSON(m)
}

// kubeletMaxPods is the kubelet's default maxPods: it refuses to start
// when its user-namespace range holds fewer pods.
const kubeletMaxPods = 110

// tellKubeletRange gives a kubelet run in crib's namespaces the range it
// hands pods with hostUsers: false. The kubelet reads it as the
// subordinate ids of a user named kubelet (getsubids kubelet), in its own
// id space, which inside crib's namespace is crib's: so crib's copy of
// /etc (rootless.copy_up) gets that user, with crib's ids from 65536
// (those below are its other pods') for as many pods as fit. Without
// the entry the kubelet picks ranges anywhere in 2^32 ids, which crib
// refuses. The host's files stay as they are. Nothing is written when
// /etc is not copied up or the range holds fewer pods than the kubelet's
// default maxPods (it would refuse to start).
func tellKubeletRange(pods int) error {
	if pods < kubeletMaxPods || !rootless.CopiedUp("/etc") {
		return nil
	}
	return writeKubeletEntries("/etc", pods)
}

// writeKubeletEntries is tellKubeletRange's work on the copied-up etc.
func writeKubeletEntries(etc string, pods int) error {
	entry := fmt.Sprintf("kubelet:%d:%d", idmap.PodIDs, pods*idmap.PodIDs)
	for _, f := range []string{"subuid", "subgid"} {
		if err := rewriteEtc(etc, f, func(lines []string) []string {
			lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "kubelet:") })
			return append(lines, entry)
		}); err != nil {
			return err
		}
	}
	return rewriteEtc(etc, "passwd", func(lines []string) []string {
		if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "kubelet:") }) {
			return lines
		}
		return append(lines, "kubelet:x:65534:65534:crib: the kubelet's user-namespace range:/nonexistent:/usr/sbin/nologin")
	})
}

// rewriteEtc replaces crib's copy of /etc/NAME (a link to the host's
// file, or an earlier rewrite) by edit of the host's lines.
func rewriteEtc(etc, name string, edit func([]string) []string) error {
	host, err := os.ReadFile(filepath.Join(etc, rootless.HostEntriesDir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(host), "\n"), "\n")
	if len(host) == 0 {
		lines = nil
	}
	return atomicfile.WriteFile(filepath.Join(etc, name), []byte(strings.Join(edit(lines), "\n")+"\n"), 0o644)
}
