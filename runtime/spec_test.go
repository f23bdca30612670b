package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/golden"
)

// specCase is the input file testdata/spec/<name>.json: CRI messages in
// protojson, the image config in OCI JSON, and the SpecInput facts a caller
// would fill. Fields left out take the defaults of defaultCaseInput. The
// string $TESTDATA stands for the absolute testdata directory.
type specCase struct {
	Comment   string          `json:"_comment"`
	Container json.RawMessage `json:"container"`
	Sandbox   json.RawMessage `json:"sandbox"`
	Image     *imgspec.Image  `json:"image"`
	// Env is added to the container's envs: protojson spells KeyValue
	// values (bytes) in base64, which a reader cannot check by eye.
	Env                [][2]string       `json:"env"`
	Rootfs             string            `json:"rootfs"`
	Namespaces         *PodNamespaces    `json:"namespaces"`
	PodFiles           *PodFiles         `json:"podFiles"`
	CgroupsPath        *string           `json:"cgroupsPath"`
	Rootless           *bool             `json:"rootless"`
	Host               json.RawMessage   `json:"host"`
	SeccompProfileRoot string            `json:"seccompProfileRoot"`
	ImageVolumes       map[string]string `json:"imageVolumes"`
	ProcessLabel       string            `json:"processLabel"`
	MountLabel         string            `json:"mountLabel"`
	// Mounts is the fake mount table of the host (mountinfo mount point and
	// optional fields); "/" private when absent.
	Mounts []mountEntry `json:"mounts"`
	// Devices are the fake host device nodes by host path.
	Devices map[string]specs.LinuxDevice `json:"devices"`
	// AppArmorProfiles are the profiles the fake kernel has loaded.
	AppArmorProfiles []string `json:"appArmorProfiles"`
	// AbsentHostPaths do not exist on the fake host; every other path the
	// generator asks about does.
	AbsentHostPaths []string `json:"absentHostPaths"`
	// SummarizeSeccomp drops the syscall rules and architectures from the
	// golden: the moby default profile depends on the kernel version and
	// the CPU; TestRuntimeDefaultSeccomp checks its content instead.
	SummarizeSeccomp bool `json:"summarizeSeccomp"`
}

// testBoundingCaps is every capability but CAP_SYS_RESOURCE, as on the
// project's machines.
var testBoundingCaps = []string{
	"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND",
	"CAP_BPF", "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE",
	"CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
	"CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON",
	"CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYSLOG",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
	"CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM",
}

func testHost() HostInfo {
	mode := fs.FileMode(0o666)
	zero := uint32(0)
	return HostInfo{
		BoundingCaps:   slices.Clone(testBoundingCaps),
		SeccompEnabled: true,
		HugepageSizes:  []string{"2MB", "1GB"},
		Devices: []specs.LinuxDevice{
			{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode, UID: &zero, GID: &zero},
			{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200, FileMode: &mode, UID: &zero, GID: &zero},
		},
	}
}

// testdataDir is the absolute, symlink-free testdata directory.
func testdataDir(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

// defaultCaseInput is a rootless container in a pod with its own pinned
// namespaces and a delegated cgroup.
func defaultCaseInput(td string) SpecInput {
	return SpecInput{
		ID:         "ctr1",
		SandboxID:  "pod1",
		RootfsPath: filepath.Join(td, "rootfs/basic"),
		Namespaces: PodNamespaces{
			Network: NamespacePath{Path: "/run/crib/ns/pod1/net"},
			IPC:     NamespacePath{Path: "/run/crib/ns/pod1/ipc"},
			UTS:     NamespacePath{Path: "/run/crib/ns/pod1/uts"},
			PID:     "/run/crib/ns/pod1/pid",
		},
		PodFiles: PodFiles{
			Hosts:      "/run/crib/pods/pod1/hosts",
			ResolvConf: "/run/crib/pods/pod1/resolv.conf",
			Hostname:   "/run/crib/pods/pod1/hostname",
			Shm:        "/run/crib/pods/pod1/shm",
		},
		CgroupsPath: "/crib/pod1/ctr1",
		Rootless:    true,
		Host:        testHost(),
	}
}

// defaultSandboxJSON is the pod most cases run in.
const defaultSandboxJSON = `{
  "metadata": {"name": "web", "uid": "uid-1", "namespace": "default"},
  "hostname": "web-0",
  "linux": {"securityContext": {"namespaceOptions": {"pid": "CONTAINER"}}}
}`

// loadCase reads a case file and builds its SpecInput and fake probes.
func loadCase(t *testing.T, file string) (SpecInput, hostProbes, specCase) {
	t.Helper()
	td := testdataDir(t)
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("$TESTDATA"), []byte(td))
	var c specCase
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	in := defaultCaseInput(td)
	in.Config = &runtimeapi.ContainerConfig{}
	if err := protojson.Unmarshal(orDefault(c.Container, `{}`), in.Config); err != nil {
		t.Fatalf("%s: container: %v", file, err)
	}
	for _, kv := range c.Env {
		in.Config.Envs = append(in.Config.Envs, &runtimeapi.KeyValue{Key: kv[0], Value: []byte(kv[1])})
	}
	in.Sandbox = &runtimeapi.PodSandboxConfig{}
	if err := protojson.Unmarshal(orDefault(c.Sandbox, defaultSandboxJSON), in.Sandbox); err != nil {
		t.Fatalf("%s: sandbox: %v", file, err)
	}
	if len(c.Host) > 0 {
		if err := json.Unmarshal(c.Host, &in.Host); err != nil {
			t.Fatalf("%s: host: %v", file, err)
		}
	}
	in.Image = c.Image
	if c.Rootfs != "" {
		in.RootfsPath = filepath.Join(td, "rootfs", c.Rootfs)
	}
	if c.Namespaces != nil {
		in.Namespaces = *c.Namespaces
	}
	if c.PodFiles != nil {
		in.PodFiles = *c.PodFiles
	}
	if c.CgroupsPath != nil {
		in.CgroupsPath = *c.CgroupsPath
	}
	if c.Rootless != nil {
		in.Rootless = *c.Rootless
	}
	in.SeccompProfileRoot = c.SeccompProfileRoot
	in.ImageVolumes = c.ImageVolumes
	in.ProcessLabel, in.MountLabel = c.ProcessLabel, c.MountLabel
	probes := fakeProbes(c.Mounts, c.Devices, c.AppArmorProfiles)
	probes.exists = func(p string) bool { return !slices.Contains(c.AbsentHostPaths, p) }
	return in, probes, c
}

func orDefault(raw json.RawMessage, def string) []byte {
	if len(raw) == 0 {
		return []byte(def)
	}
	return raw
}

// fakeProbes stand in for the host: a mount table, device nodes and loaded
// AppArmor profiles given by the case, every other path present;
// relabelling is refused because no case turns SELinux on through this path.
func fakeProbes(mounts []mountEntry, devices map[string]specs.LinuxDevice, profiles []string) hostProbes {
	if mounts == nil {
		mounts = []mountEntry{{Mountpoint: "/"}}
	}
	return hostProbes{
		mounts: func() ([]mountEntry, error) { return mounts, nil },
		device: func(p string) (specs.LinuxDevice, error) {
			d, ok := devices[p]
			if !ok {
				return specs.LinuxDevice{}, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
			}
			return d, nil
		},
		appArmorLoaded: func(p string) (bool, error) { return slices.Contains(profiles, p), nil },
		relabel: func(p, l string) error {
			return fmt.Errorf("unexpected relabel of %s to %s", p, l)
		},
		exists: func(string) bool { return true },
	}
}

// TestGenerateSpecGolden turns each testdata/spec/<name>.json into a spec
// and compares it with <name>.golden.json; -update rewrites the goldens.
func TestGenerateSpecGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/spec/*.json")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return strings.HasSuffix(f, ".golden.json") })
	if len(files) == 0 {
		t.Fatal("no cases under testdata/spec")
	}
	td := testdataDir(t)
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			in, probes, c := loadCase(t, file)
			spec, err := generateSpec(in, probes)
			if err != nil {
				t.Fatalf("GenerateSpec: %v", err)
			}
			if c.SummarizeSeccomp {
				summarizeSeccomp(t, spec)
			}
			got, err := json.MarshalIndent(spec, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(bytes.ReplaceAll(got, []byte(td), []byte("$TESTDATA")), '\n')
			golden.Check(t, strings.TrimSuffix(file, ".json")+".golden.json", got)
		})
	}
}

// summarizeSeccomp checks the profile looks like the moby default and
// keeps only its kernel-independent part.
func summarizeSeccomp(t *testing.T, spec *specs.Spec) {
	t.Helper()
	s := spec.Linux.Seccomp
	if s == nil {
		t.Fatal("no seccomp profile")
	}
	if len(s.Syscalls) < 10 || !allows(s, "read") {
		t.Fatalf("profile does not look like the default: %d rules", len(s.Syscalls))
	}
	s.Syscalls, s.Architectures = nil, nil
}

// allows reports whether a profile has an unconditional allow rule naming
// the syscall.
func allows(s *specs.LinuxSeccomp, name string) bool {
	for _, r := range s.Syscalls {
		if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
			return true
		}
	}
	return false
}
