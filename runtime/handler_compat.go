package runtime

import (
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// crun before 1.14.3 refuses a bundle whose ociVersion does not contain
// "1.0" ("unknown version specified"), whatever else the spec holds; later
// versions check nothing. The specs crib generates carry the version of the
// runtime-spec module (1.3.0), so for such a crun the bundle is labelled
// with a 1.0 version instead: the fields it reads mean the same.
const legacyCrunSpecVersion = "1.0.2"

// SpecVersionFor is the ociVersion to write into a bundle for the runtime
// name at version (as `NAME --version` prints it, "" when unknown), or ""
// to keep the generated spec's own.
func SpecVersionFor(name, version string) string {
	if name != "crun" {
		return ""
	}
	if v, ok := parseVersion(version); ok && !versionLess(v, [3]int{1, 14, 3}) {
		return ""
	}
	return legacyCrunSpecVersion
}

// parseVersion finds the first "X.Y[.Z]" word in a --version line such as
// "crun version 1.8.1".
func parseVersion(s string) ([3]int, bool) {
	for _, word := range strings.Fields(s) {
		parts := strings.SplitN(word, ".", 3)
		if len(parts) < 2 {
			continue
		}
		var v [3]int
		ok := true
		for i, p := range parts {
			n, err := strconv.Atoi(leadingDigits(p))
			if err != nil {
				ok = false
				break
			}
			v[i] = n
		}
		if ok {
			return v, true
		}
	}
	return [3]int{}, false
}

func versionLess(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// specForRuntime is the spec as the handler's runtime is to read it.
func specForRuntime(s *specs.Spec, h Handler) *specs.Spec {
	if h.SpecVersion == "" || s.Version == h.SpecVersion {
		return s
	}
	relabelled := *s
	relabelled.Version = h.SpecVersion
	return &relabelled
}
