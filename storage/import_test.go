package storage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

// skopeoArchive writes layout image name to an archive with skopeo, as a
// user would with `skopeo copy oci:… oci-archive:…`.
func skopeoArchive(t *testing.T, name, destTransport, destName string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".tar")
	dest := destTransport + ":" + file
	if destName != "" {
		dest += ":" + destName
	}
	out, err := exec.Command("skopeo", "copy", "oci:"+fx.layoutDir+":"+name, dest).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy to %s: %v: %s", dest, err, out)
	}
	return file
}

func TestImportArchives(t *testing.T) {
	tests := []struct {
		name      string
		image     string
		transport string
		destName  string
		asStream  func(t *testing.T, file string) io.Reader // nil: read the file itself
		wantTags  []string
	}{
		{"oci-archive with a name", "base", "oci-archive", "example.test/imported/base:v1", nil,
			[]string{"example.test/imported/base:v1"}},
		{"docker-archive with a name", "app", "docker-archive", "example.test/imported/app:v2", nil,
			[]string{"example.test/imported/app:v2"}},
		{"oci-archive without a name", "base", "oci-archive", "", nil, nil},
		{"docker-archive from a gzip stream", "app", "docker-archive", "imported/app:v3", gzipStream,
			[]string{"docker.io/imported/app:v3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			file := skopeoArchive(t, tc.image, tc.transport, tc.destName)
			var r io.Reader
			if tc.asStream != nil {
				r = tc.asStream(t, file)
			} else {
				f, err := os.Open(file)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				r = f
			}
			images, err := s.Import(context.Background(), r, file)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if len(images) != 1 {
				t.Fatalf("Import returned %d images", len(images))
			}
			img := images[0]
			if img.ID != fx.images[tc.image].id || !slices.Equal(img.RepoTags, tc.wantTags) {
				t.Errorf("imported %s %v, want %s %v", img.ID, img.RepoTags, fx.images[tc.image].id, tc.wantTags)
			}
			if _, err := s.Status(context.Background(), img.ID); err != nil {
				t.Errorf("Status of the imported image: %v", err)
			}
		})
	}
}

func gzipStream(t *testing.T, file string) io.Reader {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(data)
	gz.Close()
	return io.MultiReader(&buf) // not a file: Import must spool it
}

func TestImportRefusesBadArchives(t *testing.T) {
	s := newStore(t)
	escaping := tarOf(t, map[string]string{"oci-layout": "{}", "index.json": "{}", "../../escape": "x"})
	for name, data := range map[string][]byte{
		"not a tar":             []byte("hello"),
		"no index":              tarOf(t, map[string]string{"hello": "x"}),
		"entry leaving archive": escaping,
	} {
		_, err := s.Import(context.Background(), bytes.NewReader(data), name)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Import(%s) = %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.tmpDir, "..", "escape")); err == nil {
		t.Error("an archive entry escaped the import directory")
	}
	assertEmpty(t, s)
}

func tarOf(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}
