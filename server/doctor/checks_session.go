package doctor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

func (r *run) checkSELinux() Check {
	c := Check{ID: IDSELinux, Title: "SELinux"}
	enforce, err := r.h.readTrim("/sys/fs/selinux/enforce")
	if err != nil {
		c.Detail = "disabled (no selinuxfs at /sys/fs/selinux): pod labels are not applied"
		return c
	}
	r.f.SELinux = true
	state := "permissive"
	if enforce == "1" {
		state = "enforcing"
	}
	policy := r.selinuxPolicy()
	contexts := path.Join("/etc/selinux", policy, "contexts", "lxc_contexts")
	if !r.h.exists(contexts) {
		// Container labels come from the container policy's lxc_contexts;
		// without it pods get no label and enforcing mode denies them.
		c.Detail = fmt.Sprintf("%s, policy %s, but %s is missing: pods cannot be labelled", state, policy, contexts)
		if state == "enforcing" {
			c.Status = Warn
			c.Fix = r.fix.install("container-selinux")
		}
		return c
	}
	c.Detail = fmt.Sprintf("%s, policy %s: pods get per-pod MCS labels", state, policy)
	return c
}

// selinuxPolicy is SELINUXTYPE from /etc/selinux/config, "targeted" by
// default as on every distribution shipping SELinux.
func (r *run) selinuxPolicy() string {
	f, err := os.Open(r.h.path("/etc/selinux/config"))
	if err != nil {
		return "targeted"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "SELINUXTYPE="); ok && v != "" {
			return strings.Trim(v, `"`)
		}
	}
	return "targeted"
}

func (r *run) checkXDGRuntimeDir() Check {
	c := Check{ID: IDXDGRuntimeDir, Title: "XDG_RUNTIME_DIR"}
	if r.h.rootful() {
		c.Detail = notNeeded + " (runtime state goes under /run)"
		return c
	}
	uid := strconv.Itoa(r.h.UID)
	dir := r.h.getenv("XDG_RUNTIME_DIR")
	var problem string
	var fixes []string
	if dir == "" {
		dir = "/run/user/" + uid
		problem = "XDG_RUNTIME_DIR is not set (sessions from su or sudo lack it), crib falls back to " + dir
		fixes = append(fixes, "export XDG_RUNTIME_DIR="+dir)
	}
	dirProblem, dirFix := r.runtimeDirProblem(dir)
	problem = joinProblems(problem, dirProblem)
	fixes = append(fixes, dirFix)
	if problem == "" {
		c.Detail = dir + " (owned by " + r.h.User + ", mode 0700)"
		return c
	}
	c.Status = Warn
	c.Detail = problem + ": crib's socket and runtime state live there"
	c.Fix = and(fixes...)
	return c
}

// runtimeDirProblem checks dir the way pam_systemd makes it: a directory
// owned by the user, mode 0700. It returns what is wrong and the fix.
func (r *run) runtimeDirProblem(dir string) (string, string) {
	info, err := os.Stat(r.h.path(dir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return dir + " does not exist",
			r.fix.sudo(fmt.Sprintf("install -d -m 0700 -o %s -g %d %s", r.h.User, r.h.GID, dir))
	case err != nil:
		return err.Error(), ""
	case !info.IsDir():
		return dir + " is not a directory", ""
	}
	var problems []string
	var fixes []string
	if owner := ownerOf(info); owner != r.h.UID {
		problems = append(problems, fmt.Sprintf("%s is owned by uid %d, not %s", dir, owner, r.h.User))
		fixes = append(fixes, r.fix.sudo("chown "+r.h.User+" "+dir))
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		problems = append(problems, fmt.Sprintf("%s has mode %04o, want 0700", dir, perm))
		if len(fixes) > 0 {
			fixes = append(fixes, r.fix.sudo("chmod 0700 "+dir))
		} else {
			fixes = append(fixes, "chmod 0700 "+dir)
		}
	}
	return strings.Join(problems, "; "), and(fixes...)
}

func joinProblems(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

func (r *run) checkLinger() Check {
	c := Check{ID: IDLinger, Title: "systemd lingering"}
	switch {
	case r.h.rootful():
		c.Detail = notNeeded
	case !r.systemd():
		c.Detail = "no systemd: lingering does not apply"
	case r.h.exists(path.Join("/var/lib/systemd/linger", r.h.User)):
		c.Detail = "enabled for " + r.h.User
	default:
		c.Status = Warn
		c.Detail = "not enabled for " + r.h.User + ": at the last logout systemd stops the user's services and removes XDG_RUNTIME_DIR, taking crib and its pods with them"
		c.Fix = r.fix.sudo("loginctl enable-linger " + r.h.User)
	}
	return c
}

// hostSideProgram is the small host-side parent `crib serve` executes
// from beside crib's binary (server/rootless.HostSideProgram).
const hostSideProgram = "crib-hostside"

// checkHostSide: rootless, `crib serve` hands its long-lived parent to
// crib-hostside beside crib's binary; without it crib keeps the parent
// in its own binary, at some 10 MiB more for as long as it runs.
func (r *run) checkHostSide() Check {
	c := Check{ID: IDHostSide, Title: "host-side parent"}
	switch {
	case r.h.rootful():
		c.Detail = notNeeded
	case r.h.Executable == "":
		c.Detail = "crib's own binary is unknown: not checked"
	default:
		p := path.Join(path.Dir(r.h.Executable), hostSideProgram)
		if ok, _ := r.h.may(p, mayExec); ok {
			c.Detail = p
			return c
		}
		c.Status = Warn
		c.Detail = p + " is missing: crib serve keeps its parent in crib's own binary, about 10 MiB more for as long as crib runs"
		c.Fix = "install crib-hostside beside crib (make install, or make build for bin/)"
	}
	return c
}
