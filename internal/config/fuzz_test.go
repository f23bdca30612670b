package config

import (
	"reflect"
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to the crib.toml loader: it must
// never panic, and whatever it accepts must be valid and survive a trip
// through Render (what `crib config` prints) unchanged.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"",
		"log_level = \"debug\"\n[storage]\ndriver = \"vfs\"\n",
		"[network]\ncni_plugin_dirs = [\"/usr/lib/cni\", \"/opt/cni/bin\"]\n",
		"[streaming]\nport = 10010\ntls_cert = \"/c\"\ntls_key = \"/k\"\n",
		Render(Default(testEnv)),
		"log_level = 3\n",
		"[storage]\ndriver = \"zfs\"\n",
		"unknown = true\n",
		"[streaming]\nport = 70000\n",
		"root = \"\"\n",
	} {
		f.Add([]byte(seed))
	}
	base := Default(testEnv)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(base, "crib.toml", data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
		again, err := Parse(base, "rendered.toml", []byte(Render(cfg)))
		if err != nil {
			t.Fatalf("Render output does not parse: %v\n%s", err, Render(cfg))
		}
		if !reflect.DeepEqual(normalizeLists(again), normalizeLists(cfg)) {
			t.Fatalf("round trip changed the config:\n got %#v\nwant %#v", again, cfg)
		}
	})
}

// normalizeLists treats a nil and an empty list alike: TOML writes both as [].
func normalizeLists(c Config) Config {
	if len(c.Network.CNIPluginDirs) == 0 {
		c.Network.CNIPluginDirs = nil
	}
	return c
}
