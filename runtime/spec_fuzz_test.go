package runtime

import (
	"errors"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// FuzzGenerateSpec turns arbitrary CRI container and pod configurations
// (protojson, as the golden cases spell them) into OCI specs for a fixed
// host and the testdata rootfs: no input may panic the generator, and
// every refusal must carry an errdefs kind, which is what the CRI layer
// turns into a gRPC code. The host's mount table and devices are the
// golden tests' fakes, so that a run does not depend on the machine.
func FuzzGenerateSpec(f *testing.F) {
	for _, seed := range [][2]string{
		{`{}`, defaultSandboxJSON},
		{`{"metadata":{"name":"c"},"image":{"image":"busybox"},"command":["/bin/sh"],"args":["-c","true"],"workingDir":"/tmp"}`, defaultSandboxJSON},
		{`{"linux":{"securityContext":{"privileged":true,"capabilities":{"addCapabilities":["ALL"]}}}}`, `{"linux":{"securityContext":{"privileged":true}}}`},
		{`{"linux":{"securityContext":{"runAsUser":{"value":"1000"},"runAsGroup":{"value":"1000"},"readonlyRootfs":true,"seccomp":{"profileType":"RuntimeDefault"}}}}`, defaultSandboxJSON},
		{`{"mounts":[{"containerPath":"/data","hostPath":"/tmp","readonly":true,"propagation":"PROPAGATION_PRIVATE"}]}`, defaultSandboxJSON},
		{`{"linux":{"resources":{"cpuQuota":"50000","cpuPeriod":"100000","memoryLimitInBytes":"67108864","hugepageLimits":[{"pageSize":"2MB","limit":"2097152"}]}}}`, defaultSandboxJSON},
		{`{"linux":{"securityContext":{"namespaceOptions":{"pid":"TARGET","targetId":"other"}}}}`, defaultSandboxJSON},
		{`{"linux":{"securityContext":{"runAsUsername":"nobody"}}}`, defaultSandboxJSON},
		{`{"devices":[{"containerPath":"/dev/fuse","hostPath":"/dev/fuse","permissions":"rwm"}]}`, defaultSandboxJSON},
		{`{"linux":{"securityContext":{"seccomp":{"profileType":"Localhost","localhostRef":"../../etc/passwd"}}}}`, defaultSandboxJSON},
		{`{"mounts":[{"containerPath":"relative","hostPath":""}]}`, defaultSandboxJSON},
		{`{"linux":{"securityContext":{"capabilities":{"addCapabilities":["CAP_NOPE"]}}}}`, defaultSandboxJSON},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	td, err := absTestdata()
	if err != nil {
		f.Fatal(err)
	}
	probes := fakeProbes(nil, nil, nil)
	f.Fuzz(func(t *testing.T, container, sandbox []byte) {
		in := defaultCaseInput(td)
		in.Config = &runtimeapi.ContainerConfig{}
		in.Sandbox = &runtimeapi.PodSandboxConfig{}
		// protojson refuses what the gRPC layer would never decode; the
		// rest is exactly what a client can send.
		if protojson.Unmarshal(container, in.Config) != nil || protojson.Unmarshal(sandbox, in.Sandbox) != nil {
			return
		}
		spec, err := generateSpec(in, probes)
		if err != nil {
			if !wrapsErrdefs(err) {
				t.Fatalf("error without an errdefs kind: %v", err)
			}
			return
		}
		if spec == nil || spec.Process == nil || spec.Root == nil {
			t.Fatalf("spec without a process or root: %+v", spec)
		}
	})
}

func wrapsErrdefs(err error) bool {
	for _, kind := range []error{
		errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrAlreadyExists,
		errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrUnimplemented,
		errdefs.ErrPermissionDenied,
	} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}

// absTestdata is testdataDir for a fuzz target.
func absTestdata() (string, error) {
	abs, err := filepath.Abs("testdata")
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}
