package storage

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/opencontainers/go-digest"
	cstorage "go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
)

// pullDrivers are the drivers pulls are tested on: vfs takes the image
// library's copy path, overlay the staged one (stage.go).
var pullDrivers = []string{DriverVFS, DriverOverlay}

func onDriver(driver string) func(*Options) {
	return func(o *Options) { o.Driver = driver }
}

func TestPullStoresImageWithItsNamesAndConfig(t *testing.T) {
	for _, driver := range pullDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, onDriver(driver))
			ctx := context.Background()
			want := fx.images["base"]
			var mu sync.Mutex
			var events []Progress
			img, err := s.Pull(ctx, ref("base"), nil, func(p Progress) {
				mu.Lock()
				events = append(events, p)
				mu.Unlock()
			})
			if err != nil {
				t.Fatalf("Pull: %v", err)
			}
			if img.ID != want.id {
				t.Errorf("ID = %s, want the config digest %s", img.ID, want.id)
			}
			if !slices.Equal(img.RepoTags, []string{ref("base")}) {
				t.Errorf("RepoTags = %v", img.RepoTags)
			}
			wantDigest := "example.test/test/base@" + want.manifest.String()
			if !slices.Contains(img.RepoDigests, wantDigest) {
				t.Errorf("RepoDigests = %v, want %s among them", img.RepoDigests, wantDigest)
			}
			if img.Size == 0 || img.Config == nil || img.User != "1000" {
				t.Errorf("Size %d, Config %v, User %q", img.Size, img.Config, img.User)
			}
			if uid, name := img.UserID(); uid == nil || *uid != 1000 || name != "" {
				t.Errorf("UserID = %v, %q", uid, name)
			}
			mu.Lock()
			defer mu.Unlock()
			layerDigest := want.layers[0].digest.String()
			if !slices.ContainsFunc(events, func(p Progress) bool {
				return p.Digest == layerDigest && p.Event == ProgressDone && p.Ref == ref("base")
			}) {
				t.Errorf("no done event for layer %s among %v", layerDigest, events)
			}
		})
	}
}

func TestStatusFindsImageByEveryName(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	img, err := s.Pull(ctx, ref("app"), nil, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	for _, name := range []string{
		img.ID,
		"sha256:" + img.ID,
		img.ID[:12],
		ref("app"),
		"example.test/test/app",
		"example.test/test/app@" + fx.images["app"].manifest.String(),
		"example.test/test/app:latest@" + fx.images["app"].manifest.String(),
	} {
		got, err := s.Status(ctx, name)
		if err != nil {
			t.Errorf("Status(%s): %v", name, err)
			continue
		}
		if got.ID != img.ID || got.User != "www-data" {
			t.Errorf("Status(%s) = %s user %q", name, got.ID, got.User)
		}
		if uid, user := got.UserID(); uid != nil || user != "www-data" {
			t.Errorf("UserID = %v, %q", uid, user)
		}
	}
	for name, kind := range map[string]error{
		"example.test/test/app:other":                                  errdefs.ErrNotFound,
		"example.test/test/base":                                       errdefs.ErrNotFound,
		"example.test/test/base@" + fx.images["app"].manifest.String(): errdefs.ErrNotFound,
		strings.Repeat("0", 64):                                        errdefs.ErrNotFound,
		"Not A Reference":                                              errdefs.ErrInvalidArgument,
	} {
		if _, err := s.Status(ctx, name); !errors.Is(err, kind) {
			t.Errorf("Status(%s) = %v, want %v", name, err, kind)
		}
	}
	all, err := s.List(ctx, "")
	if err != nil || len(all) != 1 {
		t.Errorf("List = %v, %v", all, err)
	}
	filtered, err := s.List(ctx, "example.test/test/app")
	if err != nil || len(filtered) != 1 || filtered[0].ID != img.ID {
		t.Errorf("List(app) = %v, %v", filtered, err)
	}
	none, err := s.List(ctx, "example.test/test/base")
	if err != nil || len(none) != 0 {
		t.Errorf("List(base) = %v, %v", none, err)
	}
}

func TestPullThroughMirror(t *testing.T) {
	s := newStore(t)
	img, err := s.Pull(context.Background(), "mirrored.test/test/base", nil, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if img.ID != fx.images["base"].id || !slices.Equal(img.RepoTags, []string{"mirrored.test/test/base:latest"}) {
		t.Errorf("got %s %v", img.ID, img.RepoTags)
	}
}

func TestPullErrorsNameTheirKind(t *testing.T) {
	tests := []struct {
		name     string
		ref      string
		auth     *Auth
		kind     error
		mentions []string
	}{
		{"unreachable registry", "down.test/test/base", nil, errdefs.ErrUnavailable, []string{"down.test", fx.closedAddr}},
		{"registry in an outage", "outage.test/test/base", nil, errdefs.ErrUnavailable, []string{"outage.test", fx.outageAddr}},
		{"blocked registry", "blocked.test/test/base", nil, errdefs.ErrPermissionDenied, []string{"blocked.test"}},
		{"unknown image", ref("nope"), nil, errdefs.ErrNotFound, []string{"example.test"}},
		{"invalid reference", "UPPER/case", nil, errdefs.ErrInvalidArgument, nil},
		{"no credentials", fx.authReg.addr + "/test/base", nil, errdefs.ErrPermissionDenied, []string{fx.authReg.addr}},
		{"wrong password", fx.authReg.addr + "/test/base", &Auth{Username: authUser, Password: "wrong"}, errdefs.ErrPermissionDenied, []string{fx.authReg.addr}},
		{"malformed auth", fx.authReg.addr + "/test/base", &Auth{Auth: "%%%"}, errdefs.ErrInvalidArgument, nil},
	}
	s := newStore(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Pull(context.Background(), tc.ref, tc.auth, nil)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("Pull(%s) = %v, want %v", tc.ref, err, tc.kind)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not name %s", err, m)
				}
			}
			assertEmpty(t, s)
		})
	}
}

func TestPullWithCredentials(t *testing.T) {
	s := newStore(t)
	basic := base64.StdEncoding.EncodeToString([]byte(authUser + ":" + authPassword))
	for _, auth := range []*Auth{
		{Username: authUser, Password: authPassword},
		{Auth: basic, ServerAddress: fx.authReg.addr},
	} {
		img, err := s.Pull(context.Background(), fx.authReg.addr+"/test/base:latest", auth, nil)
		if err != nil {
			t.Fatalf("Pull with %+v: %v", auth, err)
		}
		if img.ID != fx.images["base"].id {
			t.Errorf("ID = %s", img.ID)
		}
		if err := s.Remove(context.Background(), img.ID); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDigestMismatchStoresNothing(t *testing.T) {
	for _, driver := range pullDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, onDriver(driver))
			for _, r := range []string{
				ref("corrupt"), // a layer blob damaged in the registry
				"example.test/test/signed-ish@" + fx.images["signed-ish"].manifest.String(), // a manifest damaged
			} {
				_, err := s.Pull(context.Background(), r, nil, nil)
				if err == nil {
					t.Fatalf("Pull(%s) succeeded with a damaged blob", r)
				}
				if !strings.Contains(strings.ToLower(err.Error()), "digest") {
					t.Errorf("Pull(%s) error does not mention the digest: %v", r, err)
				}
				assertEmpty(t, s)
			}
		})
	}
}

func TestConcurrentPullsShareOneTransfer(t *testing.T) {
	for _, driver := range pullDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, onDriver(driver))
			appLayer := fx.images["app"].layers[1].digest.String()
			before := fx.proxy.blobGets(appLayer)
			arrived, release := fx.proxy.holdBlob(appLayer)
			defer release()

			const callers = 5
			results := make(chan error, callers)
			ids := make(chan string, callers)
			pull := func() {
				img, err := s.Pull(context.Background(), ref("app"), nil, nil)
				ids <- img.ID
				results <- err
			}
			go pull()
			<-arrived
			for range callers - 1 {
				go pull()
			}
			waitFor(t, "all callers to join", func() bool {
				s.pullsMu.Lock()
				defer s.pullsMu.Unlock()
				c := s.pulls[pullKey{ref: ref("app")}]
				return c != nil && c.waiters == callers
			})
			release()
			for range callers {
				if err := <-results; err != nil {
					t.Fatalf("Pull: %v", err)
				}
				if id := <-ids; id != fx.images["app"].id {
					t.Errorf("ID = %s", id)
				}
			}
			if got := fx.proxy.blobGets(appLayer) - before; got != 1 {
				t.Errorf("the layer was downloaded %d times, want once", got)
			}
		})
	}
}

func TestCancelledPullLeavesNothing(t *testing.T) {
	for _, driver := range pullDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, onDriver(driver))
			firstLayer := fx.images["big"].layers[0].digest.String()
			bigLayer := fx.images["big"].layers[1].digest.String()
			arrived, release := fx.proxy.holdBlob(bigLayer)
			defer release()
			ctx, cancel := context.WithCancel(context.Background())
			firstDone := make(chan struct{})
			var once sync.Once
			done := make(chan error, 1)
			go func() {
				_, err := s.Pull(ctx, ref("big"), nil, func(p Progress) {
					if p.Digest == firstLayer && p.Event == ProgressDone {
						once.Do(func() { close(firstDone) })
					}
				})
				done <- err
			}()
			<-arrived
			// The first layer arrives unhindered and is stored (or staged)
			// on its own.
			<-firstDone
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Pull = %v, want context.Canceled", err)
			}
			assertEmpty(t, s)
			release()
			if _, err := s.Pull(context.Background(), ref("big"), nil, nil); err != nil {
				t.Fatalf("pulling again after a cancelled pull: %v", err)
			}
		})
	}
}

// TestMaliciousLayerWritesNothingOutside pulls layers whose entries aim
// at a canary directory outside the store: by "../" names, an absolute
// name, a symlink to it followed by a file through the link, and a hard
// link to a file in it. Whether the pull fails or stores the entries
// inside the layer, the canary must be untouched.
func TestMaliciousLayerWritesNothingOutside(t *testing.T) {
	for _, driver := range []string{DriverVFS, DriverOverlay} {
		for _, name := range []string{"evil-dotdot", "evil-absolute", "evil-symlink", "evil-hardlink"} {
			t.Run(driver+"/"+name, func(t *testing.T) {
				s := newStore(t, func(o *Options) { o.Driver = driver })
				_, err := s.Pull(context.Background(), ref(name), nil, nil)
				t.Logf("Pull(%s): %v", name, err)
				if err != nil {
					assertEmpty(t, s)
				}
				assertCanaryUntouched(t)
			})
		}
	}
}

func assertCanaryUntouched(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(fx.canary)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "target" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("canary directory holds %v, want only target", names)
	}
	data, err := os.ReadFile(filepath.Join(fx.canary, "target"))
	if err != nil || string(data) != "original" {
		t.Errorf("canary target = %q, %v", data, err)
	}
	if n := linkCount(t, filepath.Join(fx.canary, "target")); n != 1 {
		t.Errorf("canary target has %d links: a layer hard-linked to it", n)
	}
}

func TestSignaturePolicyIsEnforced(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, func(o *Options) { o.PolicyPath = policy })
	_, err := s.Pull(context.Background(), ref("base"), nil, nil)
	if !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Fatalf("Pull under a rejecting policy = %v, want ErrPermissionDenied", err)
	}
	assertEmpty(t, s)
}

func TestDefaultPolicyWhenNoneExists(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	_, from, err := loadPolicy("", t.TempDir())
	if err != nil || !strings.Contains(from, "crib default") {
		t.Errorf("loadPolicy with no policy.json anywhere = %q, %v", from, err)
	}
	if _, _, err := loadPolicy(filepath.Join(t.TempDir(), "missing.json"), ""); err == nil {
		t.Error("an explicit policy file that does not exist was accepted")
	}
}

func TestExtraRegistriesConfWinsOverUsualFiles(t *testing.T) {
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	confDir := filepath.Join(cfgHome, "containers")
	mustWrite(t, filepath.Join(confDir, "registries.conf"),
		`[[registry]]
prefix = "example.test"
location = "`+fx.closedAddr+`"
insecure = true
`)
	mustWrite(t, filepath.Join(confDir, "registries.conf.d", "50-other.conf"),
		`[[registry]]
prefix = "other.test"
location = "`+fx.proxy.addr+`"
insecure = true
`)
	s := newStore(t)
	if _, err := s.Pull(context.Background(), ref("base"), nil, nil); err != nil {
		t.Errorf("the extra file's example.test entry did not win: %v", err)
	}
	if _, err := s.Pull(context.Background(), "other.test/test/base", nil, nil); err != nil {
		t.Errorf("the user's drop-in was not read: %v", err)
	}
}

func TestLayersSharedBetweenImagesAreStoredOnce(t *testing.T) {
	for _, driver := range pullDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, onDriver(driver))
			ctx := context.Background()
			for _, name := range []string{"base", "app"} {
				if _, err := s.Pull(ctx, ref(name), nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			layers, err := s.store.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != 2 {
				t.Errorf("%d layers stored for two images sharing one of their two distinct layers", len(layers))
			}
			base, _ := s.store.Image(fx.images["base"].id)
			app, _ := s.store.Image(fx.images["app"].id)
			top, err := s.store.Layer(app.TopLayer)
			if err != nil || top.Parent != base.TopLayer {
				t.Errorf("app's layer sits on %q, want base's %q (%v)", top.Parent, base.TopLayer, err)
			}
		})
	}
}

// assertEmpty checks the store holds no image and no layer.
func assertEmpty(t *testing.T, s *Store) {
	t.Helper()
	images, err := s.store.Images()
	if err != nil || len(images) != 0 {
		t.Errorf("store holds images %v (%v)", images, err)
	}
	layers, err := s.store.Layers()
	if err != nil || len(layers) != 0 {
		t.Errorf("store holds %d layers (%v)", len(layers), err)
	}
	staging, err := os.ReadDir(filepath.Join(s.GraphRoot(), "overlay", "staging"))
	if err != nil && !errors.Is(err, os.ErrNotExist) || len(staging) != 0 {
		t.Errorf("staging directories left: %v (%v)", staging, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLaterLayersUnpackWhileAnEarlierOneDownloads holds the base layer of
// a two-layer image in the registry and expects the second layer unpacked
// (in a staging directory) meanwhile: layers are fetched and unpacked at
// once, not spooled and then applied one after the other.
func TestLaterLayersUnpackWhileAnEarlierOneDownloads(t *testing.T) {
	s := newStore(t, onDriver(DriverOverlay))
	app := fx.images["app"]
	arrived, release := fx.proxy.holdBlob(app.layers[0].digest.String())
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := s.Pull(context.Background(), ref("app"), nil, nil)
		done <- err
	}()
	<-arrived
	staged := filepath.Join(s.GraphRoot(), "overlay", "staging", "*", "dir", "app", "index.html")
	waitFor(t, "the second layer to be unpacked", func() bool {
		found, _ := filepath.Glob(staged)
		return len(found) == 1
	})
	release()
	if err := <-done; err != nil {
		t.Fatalf("Pull: %v", err)
	}
	assertLayersMatchTheImage(t, s, "app")
}

// TestPulledLayersGiveTheirTarBack checks what the store records of each
// pulled layer on every driver: the blob and DiffID digests, the owners of
// its files, and a tar-split that gives back the very tar of the blob.
func TestPulledLayersGiveTheirTarBack(t *testing.T) {
	for _, driver := range pullDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, onDriver(driver))
			if _, err := s.Pull(context.Background(), ref("app"), nil, nil); err != nil {
				t.Fatal(err)
			}
			assertLayersMatchTheImage(t, s, "app")
		})
	}
}

func assertLayersMatchTheImage(t *testing.T, s *Store, name string) {
	t.Helper()
	want := fx.images[name]
	img, err := s.store.Image(want.id)
	if err != nil {
		t.Fatal(err)
	}
	id := img.TopLayer
	for i := len(want.layers) - 1; i >= 0; i-- {
		l, err := s.store.Layer(id)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if l.CompressedDigest != want.layers[i].digest || l.UncompressedDigest != want.layers[i].diffID {
			t.Errorf("layer %d records %s / %s, want %s / %s", i, l.CompressedDigest, l.UncompressedDigest, want.layers[i].digest, want.layers[i].diffID)
		}
		if !slices.Equal(l.UIDs, []uint32{0}) || !slices.Equal(l.GIDs, []uint32{0}) {
			t.Errorf("layer %d owners %v:%v, want [0]:[0]", i, l.UIDs, l.GIDs)
		}
		diff, err := s.store.Diff("", l.ID, &cstorage.DiffOptions{Compression: new(archive.Uncompressed)})
		if err != nil {
			t.Fatalf("layer %d diff: %v", i, err)
		}
		got, err := digest.FromReader(diff)
		diff.Close()
		if err != nil || got != want.layers[i].diffID {
			t.Errorf("layer %d gives back a tar of %s (%v), want %s", i, got, err, want.layers[i].diffID)
		}
		id = l.Parent
	}
	if id != "" {
		t.Errorf("the image has more layers than %d", len(want.layers))
	}
}

// TestProgressEventsComeOneAtATime pulls a two-layer image whose layers
// download at once, with a progress callback that takes its time: no call
// may start before the previous one returned.
func TestProgressEventsComeOneAtATime(t *testing.T) {
	for _, driver := range pullDrivers {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, onDriver(driver))
			var inCall, overlaps, calls atomic.Int32
			_, err := s.Pull(context.Background(), ref("huge"), nil, func(p Progress) {
				if inCall.Add(1) > 1 {
					overlaps.Add(1)
				}
				calls.Add(1)
				time.Sleep(20 * time.Millisecond)
				inCall.Add(-1)
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls.Load() < 2 || overlaps.Load() != 0 {
				t.Errorf("%d progress calls, %d of them while another ran", calls.Load(), overlaps.Load())
			}
		})
	}
}
