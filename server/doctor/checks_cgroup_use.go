package doctor

import (
	"encoding/json"
	"os"
	"path"
)

// CgroupsFileName is the file, in the runroot, where the running daemon
// records the cgroup manager it actually uses; it removes it when it stops.
const CgroupsFileName = "cgroups.json"

// CgroupUse is what the daemon confines pods with.
type CgroupUse struct {
	Manager  string `json:"manager"` // cgroupfs or none
	Version  int    `json:"version"` // 1, 2, or 0 for none
	Confined bool   `json:"confined"`
	// Controllers are those pods get limits from.
	Controllers []string `json:"controllers,omitempty"`
	Reason      string   `json:"reason"`
	// Placement is what the rootless parent did before the daemon started
	// (crib's processes moved to a leaf, pods given a sibling or a scope).
	Placement json.RawMessage `json:"placement,omitempty"`
}

// daemonCgroupUse reads the running crib's record, if there is one.
func (r *run) daemonCgroupUse() (CgroupUse, bool) {
	var u CgroupUse
	data, err := os.ReadFile(r.h.path(path.Join(r.cfg.RunRoot, CgroupsFileName)))
	if err != nil || json.Unmarshal(data, &u) != nil || u.Manager == "" {
		return u, false
	}
	return u, true
}

// apply makes the cgroup check say what the daemon uses: a prediction
// that cgroups are usable is no comfort while pods run unconfined.
func (u CgroupUse) apply(c Check) Check {
	if !u.Confined {
		c.Status = Warn
		c.Detail = "the running crib confines no pod (no cpu, memory or pids limits): " + u.Reason
		return c
	}
	c.Status, c.Fix = OK, ""
	c.Detail = "the running crib uses " + u.Manager + ": " + u.Reason
	return c
}

// WithCgroupUse is rep with its cgroup check replaced by what the daemon
// uses; the daemon calls it once it has picked its manager.
func WithCgroupUse(rep Report, u CgroupUse) Report {
	checks := make([]Check, len(rep.Checks))
	copy(checks, rep.Checks)
	for i, c := range checks {
		if c.ID == IDCgroup {
			checks[i] = u.apply(c)
		}
	}
	rep.Checks = checks
	return rep
}
