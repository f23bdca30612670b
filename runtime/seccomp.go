package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// profileKind is what a seccomp or AppArmor request asks for.
type profileKind int

const (
	profileNone           profileKind = iota // nothing requested
	profileUnconfined                        // explicitly no confinement
	profileRuntimeDefault                    // the runtime's default
	profileLocalhost                         // a named profile on the node
)

// Legacy string forms of the deprecated *_profile_path / apparmor_profile
// fields.
const (
	legacyRuntimeDefault = "runtime/default"
	legacyDockerDefault  = "docker/default"
	legacyUnconfined     = "unconfined"
	legacyLocalhost      = "localhost/"
)

// setSeccomp must run after setCapabilities: the default profile allows some
// syscalls only to containers holding the matching capability.
func (b *specBuilder) setSeccomp() error {
	if b.privileged() {
		return nil
	}
	kind, ref, err := requestedProfile(b.sc.GetSeccomp(), b.sc.GetSeccompProfilePath())
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	profile, err := b.seccompProfile(kind, ref)
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	b.spec.Linux.Seccomp = profile
	return nil
}

func (b *specBuilder) seccompProfile(kind profileKind, ref string) (*specs.LinuxSeccomp, error) {
	switch kind {
	case profileRuntimeDefault:
		// Where the kernel has no seccomp, the runtime's default is none,
		// as in CRI-O; an explicit localhost profile still fails below.
		if !b.in.Host.SeccompEnabled {
			return nil, nil
		}
		p, err := seccomp.GetDefaultProfile(b.spec)
		if err != nil {
			return nil, fmt.Errorf("build the default profile: %w", err)
		}
		return p, nil
	case profileLocalhost:
		if !b.in.Host.SeccompEnabled {
			return nil, fmt.Errorf("%w: seccomp is not enabled on this host", errdefs.ErrInvalidArgument)
		}
		return b.localhostSeccomp(ref)
	default:
		return nil, nil
	}
}

// requestedProfile reads the structured SecurityProfile field and falls back
// to the deprecated string field when the structured one is absent. For the
// string field "" means nothing requested.
func requestedProfile(p *runtimeapi.SecurityProfile, legacy string) (profileKind, string, error) {
	if p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return profileRuntimeDefault, "", nil
		case runtimeapi.SecurityProfile_Unconfined:
			return profileUnconfined, "", nil
		case runtimeapi.SecurityProfile_Localhost:
			ref := strings.TrimPrefix(p.GetLocalhostRef(), legacyLocalhost)
			if ref == "" {
				return 0, "", fmt.Errorf("%w: localhost profile without localhost_ref", errdefs.ErrInvalidArgument)
			}
			return profileLocalhost, ref, nil
		default:
			return 0, "", fmt.Errorf("%w: unknown profile type %d", errdefs.ErrInvalidArgument, p.GetProfileType())
		}
	}
	switch {
	case legacy == "":
		return profileNone, "", nil
	case legacy == legacyUnconfined:
		return profileUnconfined, "", nil
	case legacy == legacyRuntimeDefault || legacy == legacyDockerDefault:
		return profileRuntimeDefault, "", nil
	case strings.HasPrefix(legacy, legacyLocalhost) && len(legacy) > len(legacyLocalhost):
		return profileLocalhost, strings.TrimPrefix(legacy, legacyLocalhost), nil
	default:
		return 0, "", fmt.Errorf("%w: unknown profile %q", errdefs.ErrInvalidArgument, legacy)
	}
}

// localhostSeccomp loads a profile file in the Docker/moby JSON format and
// converts it for the container's architecture and capabilities.
func (b *specBuilder) localhostSeccomp(ref string) (*specs.LinuxSeccomp, error) {
	file, err := localhostProfilePath(ref, b.in.SeccompProfileRoot)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: localhost profile %s does not exist", errdefs.ErrInvalidArgument, file)
	}
	if err != nil {
		// Unreadable (a directory, no permission) is the client's to fix.
		return nil, fmt.Errorf("%w: read localhost profile: %w", errdefs.ErrInvalidArgument, err)
	}
	p, err := seccomp.LoadProfile(string(data), b.spec)
	if err != nil {
		return nil, fmt.Errorf("%w: localhost profile %s: %w", errdefs.ErrInvalidArgument, file, err)
	}
	if p == nil {
		return nil, fmt.Errorf("%w: localhost profile %s has no defaultAction and no syscalls", errdefs.ErrInvalidArgument, file)
	}
	return p, nil
}

// localhostProfilePath makes a profile reference a host path: an absolute
// one is taken as is, a relative one is looked up under root and may not
// climb out of it.
func localhostProfilePath(ref, root string) (string, error) {
	if filepath.IsAbs(ref) {
		return filepath.Clean(ref), nil
	}
	if root == "" {
		return "", fmt.Errorf("%w: localhost profile %q is relative and no seccomp profile root is configured", errdefs.ErrInvalidArgument, ref)
	}
	if hasDotDot(ref) {
		return "", fmt.Errorf("%w: localhost profile %q escapes the seccomp profile root", errdefs.ErrInvalidArgument, ref)
	}
	return filepath.Join(root, ref), nil
}
