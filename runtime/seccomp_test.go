package runtime

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRuntimeDefaultSeccomp checks the content the goldens summarize: the
// moby default profile, computed after the capabilities, so that SYS_ADMIN
// unlocks the syscalls it guards (critest's sethostname checks rely on it).
func TestRuntimeDefaultSeccomp(t *testing.T) {
	for _, tt := range []struct {
		name        string
		add         []string
		allowsAdmin bool // the syscalls SYS_ADMIN guards
	}{
		{"default capabilities", nil, false},
		{"with SYS_ADMIN", []string{"SYS_ADMIN"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := validInput(t)
			sc := in.Config.Linux.SecurityContext
			sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			sc.Capabilities = &runtimeapi.Capability{AddCapabilities: tt.add}
			spec, err := generateSpec(in, fakeProbes(nil, nil, nil))
			if err != nil {
				t.Fatal(err)
			}
			s := spec.Linux.Seccomp
			if s == nil || s.DefaultAction != "SCMP_ACT_ERRNO" || len(s.Architectures) == 0 {
				t.Fatalf("not the default profile: %+v", s)
			}
			if !allows(s, "read") {
				t.Error("the default profile should allow read")
			}
			for _, call := range []string{"sethostname", "unshare", "mount"} {
				if got := allows(s, call); got != tt.allowsAdmin {
					t.Errorf("allows %s = %v, want %v", call, got, tt.allowsAdmin)
				}
			}
		})
	}
}

func TestSeccompRequests(t *testing.T) {
	for _, tt := range []struct {
		name    string
		profile *runtimeapi.SecurityProfile
		legacy  string
		host    bool // seccomp enabled
		want    bool // a profile in the spec
	}{
		{"nothing requested is unconfined", nil, "", true, false},
		{"empty legacy field is unconfined", nil, "", true, false},
		{"legacy unconfined", nil, "unconfined", true, false},
		{"legacy runtime/default", nil, "runtime/default", true, true},
		{"legacy docker/default", nil, "docker/default", true, true},
		{"structured Unconfined", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, "runtime/default", true, false},
		{"structured field wins over the legacy one", &runtimeapi.SecurityProfile{}, "unconfined", true, true},
		{"runtime default without kernel seccomp is none", &runtimeapi.SecurityProfile{}, "", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := validInput(t)
			in.Host.SeccompEnabled = tt.host
			in.Config.Linux.SecurityContext.Seccomp = tt.profile
			in.Config.Linux.SecurityContext.SeccompProfilePath = tt.legacy
			spec, err := generateSpec(in, fakeProbes(nil, nil, nil))
			if err != nil {
				t.Fatal(err)
			}
			if got := spec.Linux.Seccomp != nil; got != tt.want {
				t.Errorf("profile present = %v, want %v", got, tt.want)
			}
		})
	}
}
