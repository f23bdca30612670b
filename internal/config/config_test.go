package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
)

var testEnv = Env{UID: 1000, Home: "/home/u", XDGRuntimeDir: "/run/user/1000"}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name                 string
		env                  Env
		root, runroot, cpath string
	}{
		{"user", testEnv, "/home/u/.local/share/crib", "/run/user/1000/crib", "/home/u/.config/crib/crib.toml"},
		{"user without XDG_RUNTIME_DIR", Env{UID: 1001, Home: "/home/v"}, "/home/v/.local/share/crib", "/run/user/1001/crib", "/home/v/.config/crib/crib.toml"},
		{"xdg overrides", Env{UID: 5, Home: "/h", XDGDataHome: "/d", XDGConfigHome: "/c", XDGRuntimeDir: "/r"}, "/d/crib", "/r/crib", "/c/crib/crib.toml"},
		{"root", Env{UID: 0, Home: "/root"}, "/var/lib/crib", "/run/crib", "/etc/crib/crib.toml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default(tc.env).Finalize()
			if c.Root != tc.root || c.RunRoot != tc.runroot || tc.env.ConfigPath() != tc.cpath {
				t.Fatalf("got root=%s runroot=%s config=%s", c.Root, c.RunRoot, tc.env.ConfigPath())
			}
			if c.Listen != tc.runroot+"/crib.sock" {
				t.Fatalf("listen = %s", c.Listen)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("defaults invalid: %v", err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		toml     string
		wantErr  string // substring; empty means success
		wantLine int
		check    func(Config) bool
	}{
		{name: "empty", toml: "", check: func(c Config) bool { return c.Storage.Driver == "auto" }},
		{name: "sets keys", toml: "root = \"/x\"\n[storage]\ndriver = \"vfs\"\n[network]\ncni_plugin_dirs = [\"/a\", \"/b\"]\n",
			check: func(c Config) bool {
				return c.Root == "/x" && c.Storage.Driver == "vfs" && len(c.Network.CNIPluginDirs) == 2
			}},
		{name: "unknown top key", toml: "root = \"/x\"\nbogus = 1\n", wantErr: `key "bogus": unknown key`, wantLine: 2},
		{name: "unknown nested key", toml: "[storage]\ndriver = \"vfs\"\n\nfoo = \"x\"\n", wantErr: `key "storage.foo"`, wantLine: 4},
		{name: "wrong type", toml: "[streaming]\nport = \"eighty\"\n", wantErr: "streaming.port", wantLine: 2},
		{name: "bad value", toml: "log_level = \"info\"\n[storage]\n\ndriver = \"zfs\"\n", wantErr: `"zfs" is not one of`, wantLine: 4},
		{name: "bad port", toml: "[streaming]\nport = 70000\n", wantErr: "not a port number", wantLine: 2},
		{name: "syntax", toml: "root = \n", wantErr: "crib.toml:1"},
		{name: "metrics on", toml: "[metrics]\naddress = \"127.0.0.1:9090\"\n", check: func(c Config) bool { return c.Metrics.Address == "127.0.0.1:9090" }},
		{name: "metrics without port", toml: "[metrics]\naddress = \"127.0.0.1\"\n", wantErr: `key "metrics.address": "127.0.0.1" is not host:port`, wantLine: 2},
		{name: "nri on", toml: "[nri]\nenable = true\nrequest_timeout = \"500ms\"\n",
			check: func(c Config) bool {
				return c.NRI.Enable && c.NRI.RequestTimeout == "500ms" && c.NRI.RegistrationTimeout == "5s"
			}},
		{name: "nri bad timeout", toml: "[nri]\nenable = true\n\nrequest_timeout = \"2\"\n", wantErr: `key "nri.request_timeout": "2" is not a positive duration`, wantLine: 4},
		{name: "nri zero timeout", toml: "[nri]\nregistration_timeout = \"0s\"\n", wantErr: `nri.registration_timeout`, wantLine: 2},
		{name: "metrics port zero", toml: "\n[metrics]\naddress = \"127.0.0.1:0\"\n", wantErr: "port must be a number from 1 to 65535", wantLine: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(Default(testEnv), "crib.toml", []byte(tc.toml))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !tc.check(c) {
					t.Fatalf("unexpected config %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != "crib.toml" {
				t.Fatalf("error %T does not name the file", err)
			}
			if tc.wantLine != 0 && fe.Line != tc.wantLine {
				t.Fatalf("line %d, want %d (%v)", fe.Line, tc.wantLine, err)
			}
		})
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	def := Default(testEnv)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o := RegisterFlags(fs, def)
	if err := fs.Parse([]string{"--storage-driver=vfs", "--cni-plugin-dir=/p1,/p2", "--cni-plugin-dir=/p3", "--streaming-port=1234"}); err != nil {
		t.Fatal(err)
	}
	fromFile, err := Parse(def, "f", []byte("[storage]\ndriver = \"overlay\"\n[cgroup]\nmanager = \"none\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := o.Apply(fromFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Driver != "vfs" || c.Cgroup.Manager != "none" || c.Streaming.Port != 1234 ||
		strings.Join(c.Network.CNIPluginDirs, ":") != "/p1:/p2:/p3" {
		t.Fatalf("got %+v", c)
	}
	if len(def.Network.CNIPluginDirs) != 2 {
		t.Fatalf("flags changed the defaults: %v", def.Network.CNIPluginDirs)
	}
	bad := flag.NewFlagSet("t", flag.ContinueOnError)
	bad.SetOutput(new(strings.Builder))
	RegisterFlags(bad, def)
	if err := bad.Parse([]string{"--streaming-port=x"}); err == nil {
		t.Fatal("non-numeric port accepted")
	}
}

func TestRenderRoundTrips(t *testing.T) {
	c := Default(testEnv)
	c.Network.CNIPluginDirs = []string{"/a b", `/q"`}
	c.Streaming.Port = 10010
	back, err := Parse(Default(Env{UID: 7, Home: "/z"}), "rendered", []byte(Render(c)))
	if err != nil {
		t.Fatalf("%v\n%s", err, Render(c))
	}
	if Render(back) != Render(c) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", Render(c), Render(back))
	}
}

func TestSocketFollowsRunroot(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o := RegisterFlags(fs, Default(testEnv))
	if err := fs.Parse([]string{"--runroot=/tmp/rr", "--root=/tmp/r"}); err != nil {
		t.Fatal(err)
	}
	c, err := o.Apply(Default(testEnv))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "/tmp/rr/crib.sock" || c.Network.CNIConfDir != "/tmp/r/cni/net.d" {
		t.Fatalf("listen %s cni %s", c.Listen, c.Network.CNIConfDir)
	}
	if c.NRI.SocketPath != "/tmp/rr/nri.sock" || c.NRI.PluginDir != "/tmp/r/nri/plugins" || c.NRI.PluginConfigDir != "/tmp/r/nri/conf.d" {
		t.Fatalf("nri paths do not follow the roots: %+v", c.NRI)
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	o = RegisterFlags(fs, Default(testEnv))
	fs.Parse([]string{"--runroot=/tmp/rr", "--listen=/tmp/x.sock"})
	if c, _ = o.Apply(Default(testEnv)); c.Listen != "/tmp/x.sock" {
		t.Fatalf("explicit listen lost: %s", c.Listen)
	}
}
