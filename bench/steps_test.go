package main

import (
	"strings"
	"testing"
)

func TestStepsTable(t *testing.T) {
	log := strings.Join([]string{
		`time=x level=DEBUG msg=rpc method=/runtime.v1.RuntimeService/CreateContainer code=OK duration=3ms err=<nil> total_us=3000 step_admit_us=1000 step_rootfs_us=2000`,
		`time=x level=DEBUG msg=rpc method=/runtime.v1.RuntimeService/CreateContainer code=OK duration=5ms err=<nil> total_us=5000 step_admit_us=1000 step_rootfs_us=4000`,
		`time=x level=DEBUG msg=rpc method=/runtime.v1.RuntimeService/Version code=OK duration=1ms err=<nil> total_us=10`,
		`time=x level=INFO msg="something else" total_us=5`,
	}, "\n")
	calls, err := readStepLines(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 {
		t.Fatalf("read %d calls, want 3", len(calls))
	}
	got := stepsTable(calls, nil)
	want := "| call | n | step | median ms |\n|---|--:|---|--:|\n" +
		"| CreateContainer | 2 | **total** | 4.00 |\n" +
		"| | | admit | 1.00 |\n" +
		"| | | rootfs | 3.00 |\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}
