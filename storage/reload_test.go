package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

// registries.conf and policy.json are read at Open and again on Reload
// (SIGHUP), not between: an operator's edit takes effect at the reload,
// and an edit that does not parse leaves the configuration in force.
func TestReloadPutsEditedFilesInForce(t *testing.T) {
	dir := t.TempDir()
	regConf := filepath.Join(dir, "registries.conf")
	policy := filepath.Join(dir, "policy.json")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// At first example.test leads nowhere and every image is refused.
	write(regConf, "[[registry]]\nprefix = \"example.test\"\nlocation = \""+fx.closedAddr+"\"\ninsecure = true\n")
	write(policy, `{"default":[{"type":"reject"}]}`)
	s := newStore(t, func(o *Options) { o.RegistriesConf, o.PolicyPath = regConf, policy })
	ctx := context.Background()

	first := s.ImageConfigInForce()
	if first.Policy != policy || len(first.RegistriesConf) == 0 || first.RegistriesConf[len(first.RegistriesConf)-1] != regConf {
		t.Fatalf("in force after Open: %+v, want policy %s and %s read last", first, policy, regConf)
	}
	if _, err := s.Pull(ctx, ref("base"), nil, nil); err == nil {
		t.Fatal("pull through a registries.conf leading to a closed port succeeded")
	}

	write(regConf, fx.registriesConf())
	write(policy, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	if _, err := s.Pull(ctx, ref("base"), nil, nil); err == nil {
		t.Fatal("the edited files were in force before the reload")
	}
	second, err := s.Reload()
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !second.LoadedAt.After(first.LoadedAt) || second.Policy != policy {
		t.Errorf("in force after Reload: %+v (before: %+v)", second, first)
	}
	if _, err := s.Pull(ctx, ref("base"), nil, nil); err != nil {
		t.Fatalf("pull after the reload: %v", err)
	}

	// A broken edit: Reload fails and the working configuration stays.
	write(regConf, "[[registry]\nthis is not TOML")
	write(policy, `{"default":[{"type":"reject"}]}`)
	if _, err := s.Reload(); err == nil {
		t.Fatal("Reload of a registries.conf that does not parse succeeded")
	}
	if got := s.ImageConfigInForce(); !got.LoadedAt.Equal(second.LoadedAt) {
		t.Errorf("a failed reload replaced the configuration: %+v", got)
	}
	if _, err := s.Pull(ctx, ref("app"), nil, nil); err != nil {
		t.Fatalf("pull after a failed reload: %v", err)
	}

	// The policy alone edited: a rejecting policy is in force at once.
	write(regConf, fx.registriesConf())
	if _, err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if _, err := s.Pull(ctx, ref("big"), nil, nil); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("pull under the reloaded rejecting policy = %v, want ErrPermissionDenied", err)
	}
}
