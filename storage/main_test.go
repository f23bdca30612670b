package storage

import (
	"archive/tar"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fixture is what every test shares: a real registry (behind a counting
// proxy), a second registry that demands a password, the test images
// pushed to both, and a registries.conf pointing test names at them.
type fixture struct {
	dir        string
	reg        *registry
	authReg    *registry
	proxy      *countingProxy
	outage     *http.Server // answers 503 to everything
	outageAddr string
	closedAddr string // nothing listens here
	layoutDir  string
	images     map[string]builtImage
	canary     string // malicious layers aim here
	regConf    string
}

const (
	authUser     = "crib"
	authPassword = "s3cret"
)

var fx *fixture

func TestMain(m *testing.M) {
	if ReexecInit() {
		return
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if fuzzing() {
		// The fuzz targets need no registry, and every fuzz worker would
		// set one up again.
		return m.Run()
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "storage tests must run as root (they mount overlays and unpack layers in a chroot)")
		return 1
	}
	var err error
	fx, err = setUpFixture()
	if fx != nil {
		defer fx.tearDown()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "setting up the test registry:", err)
		return 1
	}
	return m.Run()
}

// fuzzing reports whether this run is `go test -fuzz`.
func fuzzing() bool {
	flag.Parse()
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

func setUpFixture() (*fixture, error) {
	dir, err := os.MkdirTemp("", "crib-storage-test-")
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, canary: filepath.Join(dir, "canary"), layoutDir: filepath.Join(dir, "layout")}
	if err := os.MkdirAll(f.canary, 0o755); err != nil {
		return f, err
	}
	if err := os.WriteFile(filepath.Join(f.canary, "target"), []byte("original"), 0o644); err != nil {
		return f, err
	}
	if f.reg, err = startRegistry(mkdir(dir, "registry"), ""); err != nil {
		return f, err
	}
	if f.authReg, err = startAuthRegistry(mkdir(dir, "auth-registry")); err != nil {
		return f, err
	}
	if f.proxy, err = startProxy(f.reg.addr); err != nil {
		return f, err
	}
	if f.closedAddr, err = freeAddr(); err != nil {
		return f, err
	}
	if f.outage, f.outageAddr, err = startOutage(); err != nil {
		return f, err
	}
	if f.images, err = writeLayout(f.layoutDir, testImages(f.canary)); err != nil {
		return f, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var names []string
	for name := range f.images {
		names = append(names, name)
	}
	if err := pushLayout(ctx, f.layoutDir, f.reg.addr, names); err != nil {
		return f, err
	}
	if err := pushLayout(ctx, f.layoutDir, f.authReg.addr, []string{"base"}); err == nil {
		return f, fmt.Errorf("the password registry accepted a push without credentials")
	}
	if err := pushAuthenticated(ctx, f); err != nil {
		return f, err
	}
	if err := f.corruptBlobs(); err != nil {
		return f, err
	}
	f.regConf = filepath.Join(dir, "registries.conf")
	return f, os.WriteFile(f.regConf, []byte(f.registriesConf()), 0o644)
}

func mkdir(parent, name string) string {
	d := filepath.Join(parent, name)
	os.MkdirAll(d, 0o755)
	return d
}

// testImages are the images every test can pull as example.test/test/NAME.
func testImages(canary string) []testImage {
	base := makeLayer([]tarEntry{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/hello", body: "#!/bin/sh\necho hello\n"},
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/os-release", body: "NAME=crib-test\n"},
		{name: "tmp/", typ: tar.TypeDir},
	})
	app := makeLayer([]tarEntry{{name: "app/", typ: tar.TypeDir}, {name: "app/index.html", body: "<p>app</p>\n"}})
	rel := strings.Repeat("../", 16) + strings.TrimPrefix(canary, "/")
	evil := func(name string, entries ...tarEntry) testImage {
		return testImage{name: name, layers: []testLayer{makeLayer(entries)}}
	}
	return []testImage{
		{name: "base", user: "1000", layers: []testLayer{base}},
		{name: "app", user: "www-data", layers: []testLayer{base, app}},
		{name: "big", layers: []testLayer{base, randomLayer("big.bin", 4<<20)}},
		{name: "huge", layers: []testLayer{randomLayer("small.bin", 1<<10), randomLayer("huge.bin", 12<<20)}},
		{name: "corrupt", layers: []testLayer{base, randomLayer("data.bin", 64<<10)}},
		{name: "signed-ish", user: "1000", layers: []testLayer{base}, annotations: map[string]string{"crib.test": "aaaa"}},
		evil("evil-dotdot", tarEntry{name: rel + "/escape-dotdot", body: "pwned"}),
		evil("evil-absolute", tarEntry{name: canary + "/escape-absolute", body: "pwned"}),
		evil("evil-symlink",
			tarEntry{name: "link", typ: tar.TypeSymlink, link: canary},
			tarEntry{name: "link/escape-symlink", body: "pwned"}),
		evil("evil-hardlink",
			tarEntry{name: "hl", typ: tar.TypeLink, link: rel + "/target"},
			tarEntry{name: "hl2", typ: tar.TypeLink, link: "hl"}),
	}
}

// corruptBlobs damages, inside the registry's storage, one byte of the
// corrupt image's layer and of the signed-ish image's manifest, keeping
// their sizes and formats.
func (f *fixture) corruptBlobs() error {
	layer := f.images["corrupt"].layers[1]
	if err := flipByte(f.reg.blobPath(layer.digest.Encoded()), len(layer.blob)/2); err != nil {
		return err
	}
	path := f.reg.blobPath(f.images["signed-ish"].manifest.Encoded())
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	changed := strings.Replace(string(data), `"aaaa"`, `"aaab"`, 1)
	if changed == string(data) {
		return fmt.Errorf("manifest of signed-ish lacks its annotation")
	}
	return os.WriteFile(path, []byte(changed), 0o644)
}

func flipByte(path string, at int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, int64(at)); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b, int64(at))
	return err
}

// registriesConf maps the test names: example.test to the registry
// (through the proxy), down.test to a closed port, blocked.test blocked,
// mirrored.test to a dead location with the registry as mirror,
// outage.test to a server in trouble, and marks the password registry
// insecure (plain HTTP).
func (f *fixture) registriesConf() string {
	return fmt.Sprintf(`
[[registry]]
prefix = "example.test"
location = "%[1]s"
insecure = true

[[registry]]
prefix = "down.test"
location = "%[2]s"
insecure = true

[[registry]]
prefix = "blocked.test"
location = "blocked.test"
blocked = true

[[registry]]
prefix = "mirrored.test"
location = "%[2]s"
insecure = true
[[registry.mirror]]
location = "%[1]s"
insecure = true

[[registry]]
location = "%[3]s"
insecure = true

[[registry]]
prefix = "outage.test"
location = "%[4]s"
insecure = true
`, f.proxy.addr, f.closedAddr, f.authReg.addr, f.outageAddr)
}

// startAuthRegistry runs a registry that wants authUser's password.
func startAuthRegistry(dir string) (*registry, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(authPassword), bcrypt.MinCost)
	if err != nil {
		return nil, err
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(authUser+":"+string(hash)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return startRegistry(dir, fmt.Sprintf("auth:\n  htpasswd:\n    realm: crib-test\n    path: %s\n", htpasswd))
}

// pushAuthenticated pushes base to the password registry with skopeo.
func pushAuthenticated(ctx context.Context, f *fixture) error {
	out, err := exec.CommandContext(ctx, "skopeo", "copy", "--dest-tls-verify=false",
		"--dest-creds", authUser+":"+authPassword,
		"oci:"+f.layoutDir+":base", "docker://"+f.authReg.addr+"/test/base:latest").CombinedOutput()
	if err != nil {
		return fmt.Errorf("skopeo push to the password registry: %v: %s", err, out)
	}
	return nil
}

// startOutage serves 503 on a loopback port: a registry in an outage,
// which the real registry cannot be made to imitate.
func startOutage() (*http.Server, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	})}
	go srv.Serve(l)
	return srv, l.Addr().String(), nil
}

func (f *fixture) tearDown() {
	if f.proxy != nil {
		f.proxy.close()
	}
	if f.outage != nil {
		f.outage.Close()
	}
	for _, r := range []*registry{f.reg, f.authReg} {
		if r != nil {
			r.stop()
		}
	}
	os.RemoveAll(f.dir)
}

// newStore opens a store in a fresh directory with the fixture's
// registries.conf; change opts before it is used with the modify hook.
func newStore(t *testing.T, modify ...func(*Options)) *Store {
	t.Helper()
	dir := t.TempDir()
	opts := Options{
		Root:           filepath.Join(dir, "root"),
		RunRoot:        filepath.Join(dir, "run"),
		Driver:         DriverVFS,
		RegistriesConf: fx.regConf,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, m := range modify {
		m(&opts)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range mustContainers(t, s) {
			s.DeleteContainer(c.ID)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustContainers(t *testing.T, s *Store) []ContainerFS {
	cs, err := s.ListContainers()
	if err != nil {
		t.Errorf("ListContainers: %v", err)
	}
	return cs
}

// ref names a pushed test image through registries.conf.
func ref(name string) string { return "example.test/test/" + name + ":latest" }
