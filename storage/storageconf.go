package storage

import (
	"fmt"
	"strconv"

	cfg "go.podman.io/storage/pkg/config"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/types"
)

// loadStorageConf reads storage.conf: the named file, or the usual places
// when path is empty. Roots are overwritten by the caller.
func loadStorageConf(path string) (types.StoreOptions, error) {
	if path == "" {
		opts, err := types.LoadStoreOptions(types.LoadOptions{})
		if err != nil {
			return types.StoreOptions{}, fmt.Errorf("storage: reading storage.conf: %w", err)
		}
		return opts, nil
	}
	var conf types.TomlConfig
	err := configfile.ParseTOML(&conf, &configfile.File{
		Name:                 "storage",
		Extension:            "conf",
		CustomConfigFilePath: path,
		DoNotLoadDropInFiles: true,
		ErrorIfNotFound:      true,
	})
	if err != nil {
		return types.StoreOptions{}, fmt.Errorf("storage: reading storage.conf %s: %w", path, err)
	}
	return storeOptionsFromConf(&conf), nil
}

// storeOptionsFromConf turns the parts of storage.conf crib honours into
// store options (the same translation the storage library makes for the
// usual places, which it offers no way to point at another file).
func storeOptionsFromConf(conf *types.TomlConfig) types.StoreOptions {
	o := conf.Storage.Options
	opts := types.StoreOptions{
		GraphDriverName:     conf.Storage.Driver,
		GraphDriverPriority: conf.Storage.DriverPriority.Values,
		PullOptions:         o.PullOptions,
		DisableVolatile:     o.DisableVolatile,
		RootAutoNsUser:      o.RootAutoUsernsUser,
		AutoNsMinSize:       o.AutoUsernsMinSize,
		AutoNsMaxSize:       o.AutoUsernsMaxSize,
	}
	if opts.GraphDriverName == "overlay2" {
		opts.GraphDriverName = "overlay"
	}
	add := func(key, val string) {
		if val != "" {
			opts.GraphDriverOptions = append(opts.GraphDriverOptions, key+"="+val)
		}
	}
	for _, s := range o.AdditionalImageStores.Values {
		add("imagestore", s)
	}
	for _, s := range o.AdditionalLayerStores.Values {
		add("additionallayerstore", s)
	}
	add("size", o.Size)
	add("mount_program", o.MountProgram)
	add("skip_mount_home", o.SkipMountHome)
	add("ignore_chown_errors", o.IgnoreChownErrors)
	if o.ForceMask != 0 {
		add("force_mask", strconv.FormatUint(uint64(o.ForceMask), 8))
	}
	add("mountopt", o.MountOpt)
	opts.GraphDriverOptions = append(opts.GraphDriverOptions, cfg.GetGraphDriverOptions(o)...)
	return opts
}
