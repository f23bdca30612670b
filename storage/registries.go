package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/unshare"
)

// defaultPolicy is the signature policy crib uses when no policy.json
// exists: accept every image without checking signatures.
const defaultPolicy = `{"default":[{"type":"insecureAcceptAnything"}]}`

// loadPolicy reads the signature policy: the explicit file, else the
// user's and then the system's policy.json, else crib's default. root, when
// set, prefixes the system paths (tests).
func loadPolicy(explicit, root string) (*signature.Policy, string, error) {
	if explicit != "" {
		p, err := signature.NewPolicyFromFile(explicit)
		if err != nil {
			return nil, "", fmt.Errorf("storage: signature policy %s: %w", explicit, err)
		}
		return p, explicit, nil
	}
	p, err := signature.DefaultPolicy(&types.SystemContext{RootForImplicitAbsolutePaths: root})
	if errors.Is(err, configfile.ErrConfigFileNotFound) {
		p, err = signature.NewPolicyFromBytes([]byte(defaultPolicy))
		if err != nil {
			return nil, "", fmt.Errorf("storage: crib's default signature policy: %w", err)
		}
		return p, "crib default (insecureAcceptAnything)", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("storage: signature policy: %w", err)
	}
	return p, "policy.json from the usual places", nil
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
// the usual ones. The image library reads one main file and then the
// files of one drop-in directory in name order, later entries replacing
// earlier ones prefix by prefix; dir becomes that directory, holding links
// to the usual drop-ins (in their order) and then to extra. It returns the
// main file and dir for types.SystemContext.
func layerRegistriesConf(extra, dir string) (mainFile, dropIns string, err error) {
	if _, err := os.Stat(extra); err != nil {
		return "", "", fmt.Errorf("storage: registries.conf %s: %w", extra, err)
	}
	paths, err := configfile.GetSearchPaths(registriesSearch())
	if err != nil {
		return "", "", fmt.Errorf("storage: finding registries.conf: %w", err)
	}
	if err := resetDir(dir); err != nil {
		return "", "", fmt.Errorf("storage: preparing %s: %w", dir, err)
	}
	mainFile, err = firstExisting(paths.MainFiles)
	if err != nil {
		return "", "", err
	}
	if mainFile == "" {
		// The library insists on a main file once it is told where the
		// drop-ins are; an empty one changes nothing.
		mainFile = filepath.Join(dir, "empty-main.conf")
		if err := os.WriteFile(mainFile, nil, 0o600); err != nil {
			return "", "", fmt.Errorf("storage: %w", err)
		}
		dir = filepath.Join(dir, "d")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", "", fmt.Errorf("storage: %w", err)
		}
	}
	files, err := dropInFiles(paths.DropInDirectories)
	if err != nil {
		return "", "", err
	}
	files = append(files, extra)
	for i, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return "", "", fmt.Errorf("storage: %w", err)
		}
		link := filepath.Join(dir, fmt.Sprintf("%04d-%s", i, filepath.Base(f)))
		if !strings.HasSuffix(link, ".conf") {
			link += ".conf"
		}
		if err := os.Symlink(abs, link); err != nil {
			return "", "", fmt.Errorf("storage: linking %s: %w", f, err)
		}
	}
	return mainFile, dir, nil
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
