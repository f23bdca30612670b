package record

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type inner struct {
	Labels map[string]string `json:"labels,omitempty"`
}

type rec struct {
	ID        string                       `json:"id"`
	NetNSPath string                       `json:"net_ns_path,omitempty"`
	ReaperPID int                          `json:"reaper_pid,omitempty"`
	Config    *runtimeapi.PodSandboxConfig `json:"-"`
	inner
}

func TestUnmarshal(t *testing.T) {
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"}}
	for _, tc := range []struct {
		name, data string
		want       rec
		hasConfig  bool
	}{
		{"snake_case", `{"id":"a","net_ns_path":"/n","reaper_pid":7,"labels":{"k":"v"},"config":{"metadata":{"name":"p"}}}`,
			rec{ID: "a", NetNSPath: "/n", ReaperPID: 7, inner: inner{Labels: map[string]string{"k": "v"}}}, true},
		{"Go field names (pod records before this codec)", `{"ID":"a","NetNSPath":"/n","ReaperPID":7,"Config":{"metadata":{"name":"p"}}}`,
			rec{ID: "a", NetNSPath: "/n", ReaperPID: 7}, true},
		{"no config", `{"id":"a"}`, rec{ID: "a"}, false},
		{"null config", `{"id":"a","config":null}`, rec{ID: "a"}, false},
		{"unknown keys of a newer crib", `{"id":"a","shiny":1,"config":{"metadata":{"name":"p"},"futureField":2}}`, rec{ID: "a"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got rec
			got.Config = &runtimeapi.PodSandboxConfig{}
			has, err := Unmarshal([]byte(tc.data), &got, got.Config)
			if err != nil {
				t.Fatal(err)
			}
			if has != tc.hasConfig || (has && !proto.Equal(got.Config, cfg)) {
				t.Errorf("config: has %v %v, want %v", has, got.Config, tc.hasConfig)
			}
			got.Config = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"}}
	for _, tc := range []struct {
		name   string
		fields any
		config proto.Message
		want   string
	}{
		{"fields and config", &rec{ID: "a", ReaperPID: 7}, cfg,
			"{\n  \"id\": \"a\",\n  \"reaper_pid\": 7,\n  \"config\": {\n    \"metadata\": {\n      \"name\": \"p\"\n    }\n  }\n}"},
		{"no config", &rec{ID: "a"}, nil, "{\n  \"id\": \"a\"\n}"},
		{"typed nil config", &rec{ID: "a"}, (*runtimeapi.PodSandboxConfig)(nil), "{\n  \"id\": \"a\"\n}"},
		{"no fields", &struct{}{}, cfg, "{\n  \"config\": {\n    \"metadata\": {\n      \"name\": \"p\"\n    }\n  }\n}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.fields, tc.config)
			if err != nil {
				t.Fatal(err)
			}
			// protojson may vary its spacing; compact both for comparison.
			if norm(string(got)) != norm(tc.want) {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func norm(s string) string { return strings.Join(strings.Fields(s), "") }

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	for sub, data := range map[string]string{"a": `{"id":"a"}`, "b": `{bad`} {
		if err := Save(filepath.Join(dir, sub, "r.json"), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "crashed-before-save"), 0o700); err != nil {
		t.Fatal(err)
	}
	var ids []string
	errs, err := LoadDir(dir, "r.json", func(_ string, data []byte) error {
		var r rec
		_, err := Unmarshal(data, &r, nil)
		if err == nil {
			ids = append(ids, r.ID)
		}
		return err
	})
	if err != nil || len(errs) != 1 || !strings.Contains(errs[0].Error(), "b/r.json") || !reflect.DeepEqual(ids, []string{"a"}) {
		t.Errorf("ids %v, errs %v, err %v", ids, errs, err)
	}
	if errs, err := LoadDir(filepath.Join(dir, "missing"), "r.json", nil); err != nil || errs != nil {
		t.Errorf("a missing dir: %v %v", errs, err)
	}
}

// TestSaveThenSaveUnsynced: an unsynced save replaces a saved record
// whole, and LoadDir reads the new one.
func TestSaveThenSaveUnsynced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c1", "container.json")
	if err := Save(path, []byte(`{"state":"created"}`)); err != nil {
		t.Fatal(err)
	}
	if err := SaveUnsynced(path, []byte(`{"state":"running"}`)); err != nil {
		t.Fatal(err)
	}
	var got []string
	if _, err := LoadDir(dir, "container.json", func(sub string, data []byte) error {
		got = append(got, sub+" "+string(data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != `c1 {"state":"running"}` {
		t.Fatalf("LoadDir read %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
