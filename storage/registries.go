package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/unshare"
)

// defaultPolicy is the signature policy crib uses when no policy.json
// exists: accept every image without checking signatures.
const defaultPolicy = `{"default":[{"type":"insecureAcceptAnything"}]}`

// loadPolicy reads the signature policy: the explicit file, else the
// first policy.json the image library finds (CONTAINERS_POLICY_JSON, the
// user's, the system's), else crib's default. root, when set, prefixes the
// system paths (tests). It returns the policy and the file it came from.
func loadPolicy(explicit, root string) (*signature.Policy, string, error) {
	if explicit != "" {
		p, err := signature.NewPolicyFromFile(explicit)
		if err != nil {
			return nil, "", fmt.Errorf("storage: signature policy %s: %w", explicit, err)
		}
		return p, explicit, nil
	}
	// The search signature.DefaultPolicy makes, done here to learn the
	// file's name.
	search := &configfile.File{
		Name:                         "policy",
		Extension:                    "json",
		DoNotLoadDropInFiles:         true,
		EnvironmentName:              "CONTAINERS_POLICY_JSON",
		RootForImplicitAbsolutePaths: root,
		ErrorIfNotFound:              true,
	}
	for item, err := range configfile.Read(search) {
		if errors.Is(err, configfile.ErrConfigFileNotFound) {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("storage: signature policy: %w", err)
		}
		data, err := io.ReadAll(item.Reader)
		if err != nil {
			return nil, "", fmt.Errorf("storage: signature policy %s: %w", item.Name, err)
		}
		p, err := signature.NewPolicyFromBytes(data)
		if err != nil {
			return nil, "", fmt.Errorf("storage: signature policy %s: %w", item.Name, err)
		}
		return p, item.Name, nil
	}
	p, err := signature.NewPolicyFromBytes([]byte(defaultPolicy))
	if err != nil {
		return nil, "", fmt.Errorf("storage: crib's default signature policy: %w", err)
	}
	return p, "crib default (insecureAcceptAnything)", nil
}

// registriesSearch is how go.podman.io/image looks for registries.conf.
func registriesSearch() *configfile.File {
	return &configfile.File{
		Name:            "registries",
		Extension:       "conf",
		EnvironmentName: "CONTAINERS_REGISTRIES_CONF",
		UserId:          unshare.GetRootlessUID(),
	}
}

// layerRegistriesConf makes extra the last registries.conf drop-in after
// the usual ones; see snapshotRegistriesConf.
func layerRegistriesConf(extra, dir string) (mainFile, dropIns string, err error) {
	mainFile, dropIns, _, err = snapshotRegistriesConf(extra, dir)
	return mainFile, dropIns, err
}

// snapshotRegistriesConf copies the registries.conf files the image
// library would read, and then extra (when set) as the last drop-in, into
// dir, and returns the main file and drop-in directory for
// types.SystemContext, and the files copied, the main file first: the
// files in force. The library reads one main file and then the files of
// one drop-in directory in name order, later entries replacing earlier
// ones prefix by prefix. Copies, not the files themselves: what is in
// force changes only when crib reads them again (start, SIGHUP), and a
// broken edit in between changes nothing.
func snapshotRegistriesConf(extra, dir string) (mainFile, dropIns string, inForce []string, err error) {
	if extra != "" {
		if _, err := os.Stat(extra); err != nil {
			return "", "", nil, fmt.Errorf("storage: registries.conf %s: %w", extra, err)
		}
	}
	paths, err := configfile.GetSearchPaths(registriesSearch())
	if err != nil {
		return "", "", nil, fmt.Errorf("storage: finding registries.conf: %w", err)
	}
	if err := resetDir(dir); err != nil {
		return "", "", nil, fmt.Errorf("storage: preparing %s: %w", dir, err)
	}
	usualMain, err := firstExisting(paths.MainFiles)
	if err != nil {
		return "", "", nil, err
	}
	// The library insists on a main file once it is told where the
	// drop-ins are; an empty one changes nothing.
	mainFile, dropIns = filepath.Join(dir, "main.conf"), filepath.Join(dir, "d")
	if err := copyConf(usualMain, mainFile); err != nil {
		return "", "", nil, err
	}
	if usualMain != "" {
		inForce = append(inForce, usualMain)
	}
	if err := os.MkdirAll(dropIns, 0o700); err != nil {
		return "", "", nil, fmt.Errorf("storage: %w", err)
	}
	files, err := dropInFiles(paths.DropInDirectories)
	if err != nil {
		return "", "", nil, err
	}
	if extra != "" {
		files = append(files, extra)
	}
	for i, f := range files {
		name := filepath.Join(dropIns, fmt.Sprintf("%04d-%s", i, filepath.Base(f)))
		if !strings.HasSuffix(name, ".conf") {
			name += ".conf"
		}
		if err := copyConf(f, name); err != nil {
			return "", "", nil, err
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			return "", "", nil, fmt.Errorf("storage: %w", err)
		}
		inForce = append(inForce, abs)
	}
	return mainFile, dropIns, inForce, nil
}

// copyConf copies the configuration file from (empty when "") to to.
func copyConf(from, to string) error {
	var data []byte
	if from != "" {
		var err error
		if data, err = os.ReadFile(from); err != nil {
			return fmt.Errorf("storage: reading %s: %w", from, err)
		}
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// firstExisting is the first of paths that exists, or "".
func firstExisting(paths []string) (string, error) {
	for _, p := range paths {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("storage: %w", err)
		}
	}
	return "", nil
}

// dropInFiles lists *.conf files of dirs (highest priority first) in the
// order the image library reads them: by file name, where a name in a
// higher-priority directory hides the same name in a lower one.
func dropInFiles(dirs []string) ([]string, error) {
	byName := map[string]string{}
	for _, d := range slices.Backward(dirs) {
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("storage: reading %s: %w", d, err)
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".conf") {
				byName[e.Name()] = filepath.Join(d, e.Name())
			}
		}
	}
	var files []string
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		files = append(files, byName[name])
	}
	return files, nil
}

// ImageConfigInForce is the registry and signature configuration in force, as
// `crictl info` and `crib config` show it.
type ImageConfigInForce struct {
	// RegistriesConf are the registries.conf files read, in the order the
	// image library reads them: later entries win, prefix by prefix.
	RegistriesConf []string `json:"registriesConf"`
	// Policy is the signature policy file, or crib's default.
	Policy   string    `json:"policy"`
	LoadedAt time.Time `json:"loadedAt"`
}

// imageConf is one generation of the configuration, what pulls use.
type imageConf struct {
	policy      *signature.Policy
	regConfPath string // registries.conf main file; "" means the usual search
	regDirPath  string // registries.conf.d; "" means the usual search
	info        ImageConfigInForce
}

// loadImageConf reads policy.json and registries.conf. extra, when set, is
// laid over the usual registries.conf files; their copies go in dir.
// A file that does not parse is an error: the caller keeps what it had.
func loadImageConf(policyPath, extra, dir string) (*imageConf, error) {
	policy, from, err := loadPolicy(policyPath, "")
	if err != nil {
		return nil, err
	}
	c := &imageConf{policy: policy, info: ImageConfigInForce{Policy: from, LoadedAt: time.Now()}}
	c.regConfPath, c.regDirPath, c.info.RegistriesConf, err = snapshotRegistriesConf(extra, dir)
	if err != nil {
		return nil, err
	}
	// Read the copies now to catch mistakes. The image library caches
	// them by path; each generation has its own.
	sys := &types.SystemContext{SystemRegistriesConfPath: c.regConfPath, SystemRegistriesConfDirPath: c.regDirPath}
	if _, err := sysregistriesv2.GetRegistries(sys); err != nil {
		return nil, fmt.Errorf("storage: registries.conf: %w", err)
	}
	return c, nil
}

// ImageConfigInForce is the registry and signature configuration pulls
// use now.
func (s *Store) ImageConfigInForce() ImageConfigInForce {
	info := s.conf.Load().info
	info.RegistriesConf = slices.Clone(info.RegistriesConf)
	return info
}

// Reload reads registries.conf and policy.json again (crib does on
// SIGHUP) and puts them in force for the pulls that start from now on.
// When a file does not parse, the configuration in force stays and the
// error says why.
func (s *Store) Reload() (ImageConfigInForce, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	// Each generation of copies gets its own directory: a pull that
	// started before keeps reading the previous one, removed only at the
	// next reload.
	gen := s.confGen + 1
	c, err := loadImageConf(s.policyPath, s.regExtra, s.regLinkDir(gen))
	if err != nil {
		os.RemoveAll(s.regLinkDir(gen))
		return s.ImageConfigInForce(), err
	}
	s.conf.Store(c)
	os.RemoveAll(s.regLinkDir(s.confGen - 1))
	s.confGen = gen
	s.log.Info("image configuration reloaded", "registriesConf", c.info.RegistriesConf, "policy", c.info.Policy)
	return s.ImageConfigInForce(), nil
}

// regLinkDir is where generation gen of the registries.conf copies lives.
func (s *Store) regLinkDir(gen int) string {
	return filepath.Join(s.regLinkRoot, strconv.Itoa(gen))
}
