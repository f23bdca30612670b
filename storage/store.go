package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
	cstorage "go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
)

// Options says where the store lives and which configuration files to read.
type Options struct {
	// Root is crib's durable state directory; the store's graph root is
	// Root/storage.
	Root string
	// RunRoot is crib's runtime directory (tmpfs); the store's run root is
	// RunRoot/storage.
	RunRoot string
	// Driver is "", "auto", "overlay" (native kernel overlay),
	// "fuse-overlayfs" or "vfs". Anything but auto is used as is, or Open
	// fails.
	Driver string
	// StorageConf is a storage.conf to read; empty means the usual places.
	StorageConf string
	// RegistriesConf is an extra registries.conf (v2) read after the usual
	// files, as their last drop-in: its [[registry]] entries replace
	// theirs prefix by prefix, and its top-level keys replace theirs.
	// Empty means only the usual files.
	RegistriesConf string
	// PolicyPath is the signature policy.json; empty means the user's,
	// then the system's, then crib's default (accept anything).
	PolicyPath string
	// Pinned lists image references (names, digests or ids) the kubelet
	// must never garbage-collect; Image.Pinned reports them.
	Pinned []string
	// Proxy, when set, chooses the proxy for each registry request. Rootless
	// crib pulls from inside its own network namespace and sends every
	// request through its parent in the host namespaces, so that a
	// registry on the host's loopback stays reachable.
	Proxy func(*url.URL) (*url.URL, error)
	// Logger receives crib's own log lines; nil means slog.Default().
	Logger *slog.Logger
	// Guest opens the store beside a crib daemon that may be using it at
	// the same time (the `crib image` commands). A guest spools and
	// layers registries.conf in directories of its own, removed at Close,
	// and never collects garbage: layers of a pull the daemon is running
	// are referenced by no image yet, and only the daemon can tell them
	// from orphans.
	Guest bool
}

// DriverChoice is the storage driver Open picked and why.
type DriverChoice struct {
	// Name is "overlay", "fuse-overlayfs", "vfs" or a driver forced by
	// configuration.
	Name   string
	Reason string
}

// Store is crib's image and container-filesystem store. Its methods are
// safe for concurrent use.
type Store struct {
	store  cstorage.Store
	driver DriverChoice
	log    *slog.Logger

	// conf is the registry and signature configuration in force; Reload
	// replaces it. policyPath and regExtra are the files Options named,
	// regLinkRoot holds the generations of registries.conf copies.
	conf        atomic.Pointer[imageConf]
	reloadMu    sync.Mutex
	confGen     int
	policyPath  string
	regExtra    string
	regLinkRoot string
	tmpDir      string // pulls and imports spool big files here
	stateDir    string // crib's own image-library state: blob info cache, lookaside
	sigDirs     string // registries.d (signature lookaside configuration)
	pinned      []string
	proxy       func(*url.URL) (*url.URL, error)
	guest       bool
	guestDir    string // the guest's private spool directory, removed at Close

	// stageMu is held by each staged layer being stored, alone, and by
	// the image library's copies, which may create layers (see applyLayer).
	stageMu sync.RWMutex

	pullsMu sync.Mutex
	pulls   map[pullKey]*pullCall

	act activity
}

// ReexecInit runs the storage library's helper when this process was
// started as one (it unpacks layers in a chroot by re-executing the
// binary). Call it first thing in main; when it returns true, return from
// main at once.
func ReexecInit() bool {
	return reexec.Init()
}

// Open picks the storage driver, opens the store and reads the registry
// and signature configuration. It also removes what an earlier crib left
// half done: layers no image or container uses and spooled downloads.
func Open(opts Options) (*Store, error) {
	if opts.Root == "" || opts.RunRoot == "" {
		return nil, errors.New("storage: Root and RunRoot must be set")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	storeOpts, err := loadStorageConf(opts.StorageConf)
	if err != nil {
		return nil, err
	}
	storeOpts.GraphRoot = filepath.Join(opts.Root, "storage")
	storeOpts.RunRoot = filepath.Join(opts.RunRoot, "storage")
	// Neither image stores outside crib's root nor a transient store are
	// crib's to use: the graph root is crib's alone.
	storeOpts.ImageStore = ""
	storeOpts.TransientStore = false

	cs, choice, err := openWithDriver(opts.Driver, storeOpts)
	if err != nil {
		return nil, err
	}
	s := &Store{
		store:  cs,
		driver: choice,
		log:    log,
		pinned: opts.Pinned,
		proxy:  opts.Proxy,
		pulls:  make(map[pullKey]*pullCall),
		tmpDir: filepath.Join(storeOpts.GraphRoot, "crib-tmp"),
	}
	s.stateDir = filepath.Join(opts.Root, "image-state")
	s.act.cond = sync.NewCond(&s.act.mu)
	s.act.collect = s.collectGarbage
	if opts.Guest {
		s.guest = true
		s.act.collect = func() {}
	}
	if err := s.configure(opts); err != nil {
		s.Close()
		return nil, err
	}
	log.Info("image store opened", "driver", choice.Name, "reason", choice.Reason,
		"graphroot", cs.GraphRoot(), "policy", s.conf.Load().info.Policy)
	return s, nil
}

func (s *Store) configure(opts Options) error {
	if err := s.prepareTmpDir(); err != nil {
		return err
	}
	sigDirs, err := prepareImageState(s.stateDir)
	if err != nil {
		return err
	}
	s.sigDirs = sigDirs
	s.policyPath, s.regExtra = opts.PolicyPath, opts.RegistriesConf
	s.regLinkRoot = filepath.Join(s.store.RunRoot(), "crib-registries.conf.d")
	if s.guest {
		s.regLinkRoot = filepath.Join(s.tmpDir, "registries.conf.d")
	}
	// Copies an earlier crib made are stale; so is what the image
	// library cached of them, in this process, by the same paths.
	if err := os.RemoveAll(s.regLinkRoot); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	sysregistriesv2.InvalidateCache()
	conf, err := loadImageConf(s.policyPath, s.regExtra, s.regLinkDir(0))
	if err != nil {
		return err
	}
	s.conf.Store(conf)
	if !s.guest {
		s.collectGarbage()
	}
	return nil
}

// prepareTmpDir empties the spool directory, or for a guest makes a
// private one inside it, leaving the daemon's spooled files alone.
func (s *Store) prepareTmpDir() error {
	if !s.guest {
		if err := resetDir(s.tmpDir); err != nil {
			return fmt.Errorf("storage: preparing %s: %w", s.tmpDir, err)
		}
		return nil
	}
	if err := os.MkdirAll(s.tmpDir, 0o700); err != nil {
		return fmt.Errorf("storage: preparing %s: %w", s.tmpDir, err)
	}
	dir, err := os.MkdirTemp(s.tmpDir, "guest-")
	if err != nil {
		return fmt.Errorf("storage: preparing a spool directory in %s: %w", s.tmpDir, err)
	}
	s.tmpDir, s.guestDir = dir, dir
	return nil
}

// resetDir empties dir, making it if needed: what is there was spooled by
// a crib that is no longer running.
func resetDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o700)
}

// Driver reports the storage driver in use and why it was picked.
func (s *Store) Driver() DriverChoice { return s.driver }

// GraphRoot is the directory holding images and container layers.
func (s *Store) GraphRoot() string { return s.store.GraphRoot() }

// Close releases the store. Mounted container root filesystems stay
// mounted: containers outlive crib.
func (s *Store) Close() error {
	if s.guestDir != "" {
		os.RemoveAll(s.guestDir)
	}
	_, err := s.store.Shutdown(false)
	s.store.Free()
	if errors.Is(err, cstorage.ErrLayerUsedByContainer) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: closing store: %w", err)
	}
	return nil
}

// systemContext is the go.podman.io/image configuration for one operation.
func (s *Store) systemContext() *types.SystemContext {
	conf := s.conf.Load()
	return &types.SystemContext{
		SystemRegistriesConfPath:    conf.regConfPath,
		SystemRegistriesConfDirPath: conf.regDirPath,
		BigFilesTemporaryDir:        s.tmpDir,
		DockerRegistryUserAgent:     "crib",
		DockerProxy:                 s.proxy,
		BlobInfoCacheDir:            filepath.Join(s.stateDir, "cache"),
		RegistriesDirPath:           s.sigDirs,
	}
}

// prepareImageState makes crib's own directories for the image library's
// state. Rootless crib is uid 0 inside its user namespace, so the library
// would pick root's system paths (/var/lib/containers/...), which belong
// to the real root and are unreadable there. The signature lookaside
// configuration (registries.d) is the user's own when it exists, else a
// default that keeps signatures under crib's root.
func prepareImageState(dir string) (string, error) {
	for _, d := range []string{filepath.Join(dir, "cache"), filepath.Join(dir, "sigstore"), filepath.Join(dir, "registries.d")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("storage: preparing %s: %w", d, err)
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		user := filepath.Join(home, ".config", "containers", "registries.d")
		if fi, err := os.Stat(user); err == nil && fi.IsDir() {
			return user, nil
		}
	}
	regd := filepath.Join(dir, "registries.d")
	conf := "default-docker:\n  lookaside: file://" + filepath.Join(dir, "sigstore") + "\n"
	if err := os.WriteFile(filepath.Join(regd, "default.yaml"), []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("storage: writing %s: %w", regd, err)
	}
	return regd, nil
}

// activity counts the operations that may create layers (pulls, imports,
// container creation) or delete them (removals), so that unreferenced
// layers are collected only when none runs: while a pull runs, its layers
// are legitimately referenced by nothing yet.
type activity struct {
	mu         sync.Mutex
	cond       *sync.Cond
	active     int
	dirty      bool // a failed operation may have left unreferenced layers
	collecting bool
	collect    func()
}

func (a *activity) begin() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.collecting {
		a.cond.Wait()
	}
	a.active++
}

// markDirty asks for garbage collection when the running operations end,
// as after a failure.
func (a *activity) markDirty() {
	a.mu.Lock()
	a.dirty = true
	a.mu.Unlock()
}

// end finishes an operation; the last one to finish after a failure
// collects garbage before returning, so a failed pull's caller sees a
// clean store.
func (a *activity) end(failed bool) {
	a.mu.Lock()
	a.active--
	if failed {
		a.dirty = true
	}
	if a.active > 0 || !a.dirty {
		a.mu.Unlock()
		return
	}
	a.dirty = false
	a.collecting = true
	a.mu.Unlock()

	a.collect()

	a.mu.Lock()
	a.collecting = false
	a.cond.Broadcast()
	a.mu.Unlock()
}
