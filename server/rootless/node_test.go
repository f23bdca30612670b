package rootless

import (
	"os"
	"slices"
	"testing"
)

func TestStageFDs(t *testing.T) {
	tests := []struct {
		job     string
		want    []int
		wantErr bool
	}{
		{job: "daemon:5:6", want: []int{5, 6}},
		{job: "exec:3", want: []int{3}},
		{job: "daemon:5", wantErr: true},
		{job: "exec:3:4", wantErr: true},
		{job: "exec:1", wantErr: true}, // never standard input, output or error
		{job: "exec:x", wantErr: true},
		{job: "launch:3", wantErr: true},
		{job: "daemon", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.job, func(t *testing.T) {
			got, err := stageFDs(tt.job)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("stageFDs(%q) = %v, %v; want %v, error %v", tt.job, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestJoinArgs(t *testing.T) {
	if got, want := joinArgs(42, false), []string{"--target", "42", "--user", "--mount", "--net"}; !slices.Equal(got, want) {
		t.Errorf("older holder: %q, want %q", got, want)
	}
	if got, want := joinArgs(42, true), []string{"--target", "42", "--user", "--mount", "--net", "--ipc"}; !slices.Equal(got, want) {
		t.Errorf("node holder: %q, want %q", got, want)
	}
}

// A process in the caller's own PID and IPC namespaces (here, the test
// itself) is a holder of an older crib; a pid that is gone has none.
func TestHasNodeNamespacesOwnNamespaces(t *testing.T) {
	if hasNodeNamespaces(os.Getpid()) {
		t.Error("the test's own namespaces were taken for the node's")
	}
	if hasNodeNamespaces(1 << 30) {
		t.Error("a pid that does not exist was taken for a node holder")
	}
}

func TestPipeReaderGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if pipeReaderGone(int(w.Fd())) {
		t.Error("reader gone while the read end is open")
	}
	r.Close()
	if !pipeReaderGone(int(w.Fd())) {
		t.Error("reader not gone after the read end closed")
	}
}
