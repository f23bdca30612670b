package procfs

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

// TestDescendants: a grandchild is found below the test process and below
// its parent, and nothing is found below a process without children.
func TestDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo started; wait")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 8)
	out.Read(buf) // the shell forked its sleep
	var below []int
	for deadline := time.Now().Add(5 * time.Second); len(below) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		below = Descendants(cmd.Process.Pid)
	}
	if len(below) != 1 {
		t.Fatalf("below the shell: %v, want its sleep", below)
	}
	if st, err := ReadStat(below[0]); err != nil || st.Comm != "sleep" {
		t.Errorf("below the shell: %+v %v", st, err)
	}
	if !slices.Contains(Descendants(ppidOf(t, cmd.Process.Pid)), below[0]) {
		t.Error("the grandchild is not below the test process")
	}
	if got := Descendants(below[0]); len(got) != 0 {
		t.Errorf("below a sleep: %v", got)
	}
}

func ppidOf(t *testing.T, pid int) int {
	st, err := ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.Ppid
}
