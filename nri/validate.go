package nri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/nri/pkg/adaptation/builtin"
	"github.com/containerd/nri/pkg/api"
	"golang.org/x/sys/unix"
)

// validatorName is the built-in plugin that checks every adjustment
// before crib applies it.
const validatorName = "crib-validator"

// validator checks the plugins' merged adjustment as crib checks CRI
// input, and, rootless, refuses what only real root could apply. Being a
// validator, it sees which plugin set each field and names it.
func (h *Host) validator() *builtin.BuiltinPlugin {
	return &builtin.BuiltinPlugin{
		Base:  validatorName,
		Index: "99",
		Handlers: builtin.BuiltinHandlers{
			ValidateContainerAdjustment: func(_ context.Context, req *api.ValidateContainerAdjustmentRequest) error {
				return validateAdjustment(req, h.opts.Rootless, hostLimits{})
			},
		},
	}
}

// limits are the host facts rootless checks compare against; tests give
// their own.
type limits interface {
	oomScoreAdj() (int, error)
	rlimit(typ string) (hard uint64, known bool, err error)
	deviceUsable(path string) error
}

func validateAdjustment(req *api.ValidateContainerAdjustmentRequest, rootless bool, host limits) error {
	adj := req.GetAdjust()
	if adj == nil {
		return nil
	}
	v := &check{req: req, id: req.GetContainer().GetId()}
	v.mounts(adj.GetMounts())
	v.env(adj.GetEnv())
	v.hooks(adj.GetHooks())
	if rootless {
		v.devices(adj.GetLinux().GetDevices(), host)
		v.oomScore(adj.GetLinux().GetOomScoreAdj(), host)
		v.rlimits(adj.GetRlimits(), host)
	}
	return errors.Join(v.errs...)
}

type check struct {
	req  *api.ValidateContainerAdjustmentRequest
	id   string
	errs []error
}

func (v *check) fail(owner, format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("plugin %s: %s", owner, fmt.Sprintf(format, a...)))
}

// anyPlugin names the plugins that took part when NRI records no owner
// for a field.
func (v *check) anyPlugin() string {
	var names []string
	for _, p := range v.req.GetPlugins() {
		if p.GetName() != validatorName {
			names = append(names, p.GetIndex()+"-"+p.GetName())
		}
	}
	return "(one of " + strings.Join(names, ", ") + ")"
}

func owner(name string, ok bool) string {
	if !ok || name == "" {
		return "(unknown)"
	}
	return name
}

// mounts: as for CRI mounts, an absolute, clean container path with no
// "..", and a source for bind mounts.
func (v *check) mounts(ms []*api.Mount) {
	for _, m := range ms {
		who := owner(v.req.GetOwners().MountOwner(v.id, m.GetDestination()))
		dst := m.GetDestination()
		if !path.IsAbs(dst) || path.Clean(dst) != dst || strings.Contains(dst, "..") {
			v.fail(who, "mount destination %q is not an absolute, clean path", dst)
		}
		if m.GetType() == "bind" && m.GetSource() == "" {
			v.fail(who, "bind mount at %q has no source", dst)
		}
	}
}

// env: a variable name, without "=" or NUL, as the CRI requires of envs.
func (v *check) env(kvs []*api.KeyValue) {
	for _, kv := range kvs {
		key := strings.TrimPrefix(kv.GetKey(), "-") // "-NAME" removes NAME
		if key == "" || strings.ContainsAny(key, "=\x00") || strings.ContainsRune(kv.GetValue(), 0) {
			v.fail(owner(v.req.GetOwners().EnvOwner(v.id, key)), "environment variable %q is not valid", kv.GetKey())
		}
	}
}

// hooks: OCI hooks run by absolute path.
func (v *check) hooks(hs *api.Hooks) {
	if hs == nil {
		return
	}
	all := [][]*api.Hook{hs.GetPrestart(), hs.GetCreateRuntime(), hs.GetCreateContainer(), hs.GetStartContainer(), hs.GetPoststart(), hs.GetPoststop()}
	for _, list := range all {
		for _, hk := range list {
			if !path.IsAbs(hk.GetPath()) {
				v.fail(owner(v.req.GetOwners().HooksOwner(v.id)), "hook path %q is not absolute", hk.GetPath())
			}
		}
	}
}

// devices: rootless, the runtime bind-mounts the host's node, so crib's
// user must be able to open it.
func (v *check) devices(devs []*api.LinuxDevice, host limits) {
	for _, d := range devs {
		if strings.HasPrefix(d.GetPath(), "-") {
			continue // a removal
		}
		if err := host.deviceUsable(d.GetPath()); err != nil {
			v.fail(owner(v.req.GetOwners().DeviceOwner(v.id, d.GetPath())),
				"device %s cannot be given rootless: %v", d.GetPath(), err)
		}
	}
}

// oomScore: lowering oom_score_adj below crib's own needs
// CAP_SYS_RESOURCE over the host.
func (v *check) oomScore(o *api.OptionalInt, host limits) {
	if o == nil {
		return
	}
	cur, err := host.oomScoreAdj()
	if err != nil || int(o.GetValue()) >= cur {
		return
	}
	v.fail(owner(v.req.GetOwners().OomScoreAdjOwner(v.id)),
		"oom_score_adj %d is below crib's own %d, which only real root may set", o.GetValue(), cur)
}

// rlimits: raising a hard limit above crib's needs CAP_SYS_RESOURCE over
// the host.
func (v *check) rlimits(rls []*api.POSIXRlimit, host limits) {
	for _, r := range rls {
		hard, known, err := host.rlimit(r.GetType())
		if !known {
			v.fail(v.anyPlugin(), "unknown rlimit %q", r.GetType())
			continue
		}
		if err == nil && r.GetHard() > hard {
			v.fail(v.anyPlugin(), "rlimit %s hard limit %d is above crib's own %d, which only real root may raise",
				r.GetType(), r.GetHard(), hard)
		}
	}
}

// hostLimits reads the facts from the running crib.
type hostLimits struct{}

func (hostLimits) oomScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

func (hostLimits) rlimit(typ string) (uint64, bool, error) {
	res, ok := rlimitTypes[typ]
	if !ok {
		return 0, false, nil
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(res, &rl); err != nil {
		return 0, true, err
	}
	return rl.Max, true, nil
}

func (hostLimits) deviceUsable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeDevice == 0 {
		return fmt.Errorf("not a device node")
	}
	if err := unix.Access(p, unix.R_OK|unix.W_OK); err != nil {
		return fmt.Errorf("crib's user cannot open it for reading and writing: %w", err)
	}
	return nil
}
