//go:build integration

package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Fault injection: crib is killed with SIGKILL at random moments while
// pods and containers churn, restarted, and checked. After every restart
// crib must list what exists with its true state (agreeing with runc),
// keep running containers running and reachable through exec, and let
// every object be removed through CRI; once they are removed nothing may
// be left: no mount, namespace pin, address lease, storage container,
// monitor or reaper process, cgroup. A second test simulates a power loss
// (every process gone, the runroot emptied).
//
// The test process makes itself a child subreaper while it runs, as
// systemd --user is on a real host: orphans of the killed crib (monitors,
// reapers, the namespace holder) are adopted by it and reaped, because PID
// 1 on this machine never reaps.

const faultImage = "docker.io/library/busybox:latest"

func TestIntegrationFaultKills(t *testing.T) {
	for _, mode := range cgroupModes {
		t.Run(mode.name, func(t *testing.T) { faultKills(t, mode) })
	}
}

func faultKills(t *testing.T, mode cgroupMode) {
	u := lookupTestUser(t)
	kills := envInt(t, "CRIB_FAULT_KILLS", 50)
	seed := uint64(envInt(t, "CRIB_FAULT_SEED", int(time.Now().UnixNano()%1e9)))
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("CRIB_FAULT_KILLS=%d CRIB_FAULT_SEED=%d", kills, seed)
	began := time.Now()

	adoptOrphans(t)
	flags, cg := mode.setup(t, u)
	d := newDaemon(t, u)
	d.extra = flags
	d.startWithRegistry(t)
	f := &faultRun{t: t, d: d, u: u, cg: cg}
	t.Cleanup(f.killLeftovers)
	f.connect()
	f.pull()
	f.logDir = filepath.Join(u.home, "it-fault-logs-"+filepath.Base(d.runroot))
	t.Cleanup(func() { os.RemoveAll(f.logDir) })
	empty := f.snapshot()
	userNS := namespacesOf(d.holderPID(t))["user"]

	// A pod whose container runs through every kill: it must stay
	// running, under the same monitor, reachable by exec, logging.
	f.survivor = f.runPod("survivor", false)
	f.survivorCtr = f.runContainer(f.survivor, "ticker", []string{"sh", "-c", "while true; do echo tick; sleep 1; done"})
	surv := f.containerStatus(f.survivorCtr)
	withSurvivor := f.snapshot()
	t.Logf("state with the survivor: %v", withSurvivor.counts())
	time.Sleep(1500 * time.Millisecond)
	loggedBefore := f.logLines(surv.GetLogPath())

	var st faultStats
	for i := range kills {
		f.churnAndKill(rng, i, &st)
		f.restart()
		st.addRecovery(f.recovery())
		f.checkAgreement(&st)
		f.removeAllBut(&st, f.survivor, f.survivorCtr)
		f.checkSurvivor(surv)
		st.leaks += f.expectSnapshot(fmt.Sprintf("after kill %d", i+1), withSurvivor)
		st.kills++
		if t.Failed() {
			t.Logf("stopping after kill %d: %s", i+1, st.String())
			t.FailNow()
		}
	}

	logged := f.logLines(surv.GetLogPath())
	f.removeAllBut(&st, "", "")
	st.leaks += f.expectSnapshot("after removing everything", empty)
	st.maxZombies = f.maxZombies
	if logged <= loggedBefore {
		t.Errorf("the survivor's log stayed at %d lines through the kills: its monitor stopped logging", logged)
	}
	holder := d.holderPID(t)
	d.stop(t)
	if s := procState(holder); s != "" && s != "Z" {
		t.Errorf("namespace holder %d still alive after crib stopped with nothing left", holder)
		st.leaks++
	}
	if !expectNoProcessInUserNS(t, userNS) {
		st.leaks++
	}
	t.Logf("fault injection (%s): %s in %v", mode.name, st.String(), time.Since(began).Round(time.Second))
	fmt.Printf("FAULT COUNTS: %s\n", st.String())
	if st.leaks != 0 {
		t.Errorf("%d leaks found", st.leaks)
	}
}

// TestIntegrationFaultReboot simulates a power loss: crib, its namespace
// holder, the outbound helper, every monitor and container process die at
// once and the runroot (a tmpfs) comes back empty.
func TestIntegrationFaultReboot(t *testing.T) {
	u := lookupTestUser(t)
	adoptOrphans(t)
	cg := delegateCgroups(t, u)
	d := newDaemon(t, u)
	d.extra = []string{"--cgroup-parent", cg.parent}
	d.startWithRegistry(t)
	f := &faultRun{t: t, d: d, u: u, cg: cg}
	t.Cleanup(f.killLeftovers)
	f.connect()
	f.pull()
	f.logDir = filepath.Join(u.home, "it-fault-logs-"+filepath.Base(d.runroot))
	t.Cleanup(func() { os.RemoveAll(f.logDir) })
	empty := f.snapshot()

	pod := f.runPod("rebooted", true)
	running := f.runContainer(pod, "running", []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"})
	created := f.createContainer(pod, "created", []string{"true"})

	// Power loss.
	victims := append(f.cribProcesses(true), d.holderPID(t), f.holderHelperPID())
	f.killCrib()
	for _, pid := range victims {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range victims {
		waitGone(t, pid)
	}
	entries, _ := os.ReadDir(d.runroot)
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.runroot, e.Name())); err != nil {
			t.Fatalf("emptying the runroot: %v", err)
		}
	}

	f.restart()
	for _, id := range []string{running, created} {
		st := f.containerStatus(id)
		if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 255 || st.GetReason() != "HostRestarted" {
			t.Errorf("container %s after the reboot: state %v exit %d reason %q, want EXITED 255 HostRestarted",
				st.GetMetadata().GetName(), st.GetState(), st.GetExitCode(), st.GetReason())
		}
	}
	ps, err := f.c.rs.PodSandboxStatus(f.ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	if err != nil || ps.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod after the reboot: %v %v, want NotReady", ps.GetStatus().GetState(), err)
	}
	rec := f.recovery()
	if len(rec.ContainersLost) != 2 || len(rec.PodsNotReady) != 1 {
		t.Errorf("recovered.json: %+v, want 2 containers lost and 1 pod NotReady", rec)
	}
	doc := f.doctorRecovery()
	if !strings.Contains(doc.Detail, "2 lost (marked HostRestarted)") || !strings.Contains(doc.Detail, "1 made NotReady") {
		t.Errorf("crib doctor's recovery check: %+v", doc)
	}
	t.Logf("crib doctor: %s: %s", doc.Status, doc.Detail)

	var st faultStats
	f.checkAgreement(&st)
	f.removeAllBut(&st, "", "")
	if leaks := f.expectSnapshot("after the reboot and removing everything", empty); leaks != 0 {
		t.Errorf("%d leaks after the reboot", leaks)
	}
	holder := d.holderPID(t)
	d.stop(t)
	if s := procState(holder); s != "" && s != "Z" {
		t.Errorf("namespace holder %d still alive after crib stopped with nothing left", holder)
	}
}

// killLeftovers ends, when a test failed midway, the monitors and
// containers crib would otherwise leave running after it stops.
func (f *faultRun) killLeftovers() {
	if !f.t.Failed() {
		return
	}
	if _, err := os.Stat(filepath.Join(f.d.runroot, "holder.json")); err != nil {
		return
	}
	for _, pid := range f.cribProcesses(false) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// faultRun is one crib under fault injection and what the checks need.
type faultRun struct {
	t      *testing.T
	d      *daemon
	u      testUser
	cg     delegatedCgroups
	c      criClients
	conn   interface{ Close() error }
	logDir string

	survivor, survivorCtr string
	maxZombies            int // most unreaped zombies seen by a snapshot
}

type faultStats struct {
	kills, podsCreated, ctrsCreated, ctrsStarted, execs, removedAfterRestart        int
	reattached, exited, lost, ctrsCleaned, podsNotReady, podsCleaned, rootfsCleaned int
	maxZombies, leaks                                                               int
}

func (s *faultStats) addRecovery(r recoveryRecord) {
	s.reattached += len(r.ContainersReattached)
	s.exited += len(r.ContainersExited)
	s.lost += len(r.ContainersLost)
	s.ctrsCleaned += len(r.ContainersCleaned)
	s.podsNotReady += len(r.PodsNotReady)
	s.podsCleaned += len(r.PodsCleaned)
	s.rootfsCleaned += len(r.RootfsCleaned)
}

func (s *faultStats) String() string {
	return fmt.Sprintf("kills=%d pods_created=%d containers_created=%d containers_started=%d execs=%d removed_after_restart=%d "+
		"| at restart: reattached=%d exited=%d lost=%d rollbacks: containers_cleaned=%d pods_cleaned=%d rootfs_cleaned=%d pods_not_ready=%d "+
		"| max_zombies=%d leaks=%d",
		s.kills, s.podsCreated, s.ctrsCreated, s.ctrsStarted, s.execs, s.removedAfterRestart,
		s.reattached, s.exited, s.lost, s.ctrsCleaned, s.podsCleaned, s.rootfsCleaned, s.podsNotReady,
		s.maxZombies, s.leaks)
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

func (f *faultRun) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	f.t.Cleanup(cancel)
	return ctx
}

func (f *faultRun) connect() {
	if f.conn != nil {
		f.conn.Close()
	}
	conn, err := grpcDial(f.d.socket)
	if err != nil {
		f.t.Fatal(err)
	}
	f.conn = conn
	f.c = criClients{rs: runtimeapi.NewRuntimeServiceClient(conn), is: runtimeapi.NewImageServiceClient(conn)}
	f.t.Cleanup(func() { conn.Close() })
}

func (f *faultRun) pull() {
	if _, err := f.c.is.PullImage(f.ctx(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: faultImage}}); err != nil {
		f.t.Fatalf("pull: %v\n%s", err, f.d.out)
	}
}

func faultPodConfig(name, logDir string, sharedPID bool) *runtimeapi.PodSandboxConfig {
	pid := runtimeapi.NamespaceMode_CONTAINER
	if sharedPID {
		pid = runtimeapi.NamespaceMode_POD // a catatonit reaper per pod
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "fault", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(logDir, name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: pid},
		}},
	}
}

func faultContainerConfig(name string, cmd []string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: faultImage},
		Command:  cmd,
		LogPath:  name + ".log",
	}
}

func (f *faultRun) runPod(name string, sharedPID bool) string {
	r, err := f.c.rs.RunPodSandbox(f.ctx(), &runtimeapi.RunPodSandboxRequest{Config: faultPodConfig(name, f.logDir, sharedPID)})
	if err != nil {
		f.t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, f.d.out)
	}
	return r.PodSandboxId
}

func (f *faultRun) createContainer(pod, name string, cmd []string) string {
	// No sandbox config: crib uses the pod's own.
	r, err := f.c.rs.CreateContainer(f.ctx(), &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: faultContainerConfig(name, cmd)})
	if err != nil {
		f.t.Fatalf("CreateContainer %s: %v\n%s", name, err, f.d.out)
	}
	return r.ContainerId
}

func (f *faultRun) runContainer(pod, name string, cmd []string) string {
	id := f.createContainer(pod, name, cmd)
	if _, err := f.c.rs.StartContainer(f.ctx(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		f.t.Fatalf("StartContainer %s: %v\n%s", name, err, f.d.out)
	}
	return id
}

func (f *faultRun) containerStatus(id string) *runtimeapi.ContainerStatus {
	r, err := f.c.rs.ContainerStatus(f.ctx(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		f.t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return r.Status
}

// churnAndKill runs concurrent pod and container life cycles and kills
// crib 0–300 ms into them. Each worker first walks its own cycle to a
// random step, so the kill lands in every step, not only the first.
func (f *faultRun) churnAndKill(rng *rand.Rand, iter int, st *faultStats) {
	const workers = 3
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	var pods, ctrs, started, execs atomic.Int64
	for w := range workers {
		ready.Add(1)
		done.Add(1)
		wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		go func() {
			defer done.Done()
			cw := churnWorker{c: f.c, rng: wrng, logDir: f.logDir, name: fmt.Sprintf("churn-%d-%d", iter, w),
				sharedPID: w%2 == 1, pods: &pods, ctrs: &ctrs, started: &started, execs: &execs}
			cw.run(&ready, start)
		}()
	}
	ready.Wait()
	close(start)
	time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	f.killCrib()
	done.Wait()
	st.podsCreated += int(pods.Load())
	st.ctrsCreated += int(ctrs.Load())
	st.ctrsStarted += int(started.Load())
	st.execs += int(execs.Load())
}

type churnWorker struct {
	c         criClients
	rng       *rand.Rand
	logDir    string
	name      string
	sharedPID bool

	pods, ctrs, started, execs *atomic.Int64

	n          int
	pod, ctr   string
	podCfg     *runtimeapi.PodSandboxConfig
	warmupLeft int
}

// run walks the life cycle until an RPC fails (crib was killed). Before
// the timed part it takes a random number of steps, then waits.
func (w *churnWorker) run(ready *sync.WaitGroup, start chan struct{}) {
	steps := w.steps()
	w.warmupLeft = w.rng.IntN(len(steps))
	signalled := false
	signal := func() {
		if !signalled {
			signalled = true
			ready.Done()
			<-start
		}
	}
	defer signal()
	for {
		for _, s := range steps {
			if w.warmupLeft == 0 {
				signal()
			} else {
				w.warmupLeft--
			}
			if signalled {
				time.Sleep(time.Duration(w.rng.IntN(20)) * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := s(ctx)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

func (w *churnWorker) steps() []func(context.Context) error {
	return []func(context.Context) error{
		func(ctx context.Context) error {
			w.n++
			w.podCfg = faultPodConfig(fmt.Sprintf("%s-%d", w.name, w.n), w.logDir, w.sharedPID)
			r, err := w.c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: w.podCfg})
			if err == nil {
				w.pod = r.PodSandboxId
				w.pods.Add(1)
			}
			return err
		},
		func(ctx context.Context) error {
			r, err := w.c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: w.pod,
				Config: faultContainerConfig("c", []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}), SandboxConfig: w.podCfg})
			if err == nil {
				w.ctr = r.ContainerId
				w.ctrs.Add(1)
			}
			return err
		},
		func(ctx context.Context) error {
			_, err := w.c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: w.ctr})
			if err == nil {
				w.started.Add(1)
			}
			return err
		},
		func(ctx context.Context) error {
			r, err := w.c.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: w.ctr, Cmd: []string{"sh", "-c", "echo ok"}, Timeout: 10})
			if err == nil && r.ExitCode != 0 {
				return fmt.Errorf("exec exited %d", r.ExitCode)
			}
			if err == nil {
				w.execs.Add(1)
			}
			return err
		},
		func(ctx context.Context) error {
			_, err := w.c.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: w.ctr, Timeout: 2})
			return err
		},
		func(ctx context.Context) error {
			_, err := w.c.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: w.ctr})
			return err
		},
		func(ctx context.Context) error {
			_, err := w.c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: w.pod})
			return err
		},
		func(ctx context.Context) error {
			_, err := w.c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: w.pod})
			return err
		},
	}
}

// killCrib SIGKILLs crib's parent and its daemon (each also dies with
// the other; killing both leaves no window in which one cleans up).
func (f *faultRun) killCrib() {
	daemonPID := f.d.childPID(f.t)
	syscall.Kill(f.d.cmd.Process.Pid, syscall.SIGKILL)
	syscall.Kill(daemonPID, syscall.SIGKILL)
	<-f.d.exited
	waitGone(f.t, daemonPID)
	f.d.cmd = nil
}

func (f *faultRun) restart() {
	f.d.start(f.t)
	f.connect()
}

// waitGone waits until pid has exited (a zombie counts as exited).
func waitGone(t *testing.T, pid int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := procState(pid); s == "" || s == "Z" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not die", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type recoveryRecord struct {
	ContainersReattached, ContainersExited, ContainersLost, ContainersCleaned []string
	PodsReady, PodsNotReady, PodsCleaned, RootfsCleaned                       []string
	Errors                                                                    []string
}

// recovery reads what the restarted crib's start-up recovery did.
func (f *faultRun) recovery() recoveryRecord {
	data, err := os.ReadFile(filepath.Join(f.d.runroot, "recovered.json"))
	if err != nil {
		f.t.Fatalf("crib wrote no recovery record: %v", err)
	}
	var r recoveryRecord
	if err := json.Unmarshal(data, &r); err != nil {
		f.t.Fatalf("recovered.json: %v", err)
	}
	if len(r.Errors) > 0 {
		f.t.Errorf("start-up recovery could not clean: %v\n%s", r.Errors, f.d.out)
	}
	return r
}

type doctorCheck struct {
	ID, Status, Detail string
}

func (f *faultRun) doctorRecovery() doctorCheck {
	out, err := f.u.command(os.Getenv("CRIB_BIN"), "doctor", "--json", "--root", f.d.root, "--runroot", f.d.runroot).Output()
	if err != nil {
		f.t.Fatalf("crib doctor: %v\n%s", err, out)
	}
	var rep struct{ Checks []doctorCheck }
	if err := json.Unmarshal(out, &rep); err != nil {
		f.t.Fatalf("crib doctor --json: %v", err)
	}
	for _, c := range rep.Checks {
		if c.ID == "recovery" {
			return c
		}
	}
	f.t.Fatalf("crib doctor has no recovery check:\n%s", out)
	return doctorCheck{}
}

// checkAgreement: every listed pod and container can be inspected, and
// crib's container states agree with the runtime's; running containers answer
// exec (their monitors were re-attached).
func (f *faultRun) checkAgreement(st *faultStats) {
	t := f.t
	pods, err := f.c.rs.ListPodSandbox(f.ctx(), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if _, err := f.c.rs.PodSandboxStatus(f.ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("PodSandboxStatus of listed pod %s: %v", p.Id, err)
		}
	}
	ctrs, err := f.c.rs.ListContainers(f.ctx(), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	runc := f.runtimeList()
	for _, c := range ctrs.Containers {
		cs := f.containerStatus(c.Id)
		want := map[runtimeapi.ContainerState][]string{
			runtimeapi.ContainerState_CONTAINER_CREATED: {"created"},
			runtimeapi.ContainerState_CONTAINER_RUNNING: {"running"},
			runtimeapi.ContainerState_CONTAINER_EXITED:  {"stopped", ""},
		}[cs.State]
		if want == nil || !slices.Contains(want, runc[c.Id]) {
			t.Errorf("container %s: crib says %v, its runtime says %q\n%s", c.Id, cs.State, runc[c.Id], f.d.out)
			st.leaks++
		}
		delete(runc, c.Id)
		if cs.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			r, err := f.c.rs.ExecSync(f.ctx(), &runtimeapi.ExecSyncRequest{ContainerId: c.Id, Cmd: []string{"echo", "alive"}, Timeout: 10})
			if err != nil || strings.TrimSpace(string(r.GetStdout())) != "alive" {
				t.Errorf("exec in running container %s after restart: %v %q", c.Id, err, r.GetStdout())
			}
		}
	}
	for id, status := range runc {
		t.Errorf("the runtime has container %s (%s) that crib does not list", id, status)
		st.leaks++
	}
}

// runtimeList is `runc list` and `crun list` inside crib's namespaces:
// id → status, over both handlers' state (crun is the default where it
// works, runc a handler too).
func (f *faultRun) runtimeList() map[string]string {
	m := map[string]string{}
	for _, rt := range []string{"runc", "crun"} {
		if _, err := exec.LookPath(rt); err != nil && rt == "crun" {
			continue
		}
		out, err := f.u.command(os.Getenv("CRIB_BIN"), "unshare", "--runroot", f.d.runroot, "--",
			rt, "--root", filepath.Join(f.d.runroot, rt), "list", "-f", "json").Output()
		if err != nil {
			f.t.Fatalf("%s list: %v\n%s", rt, err, out)
		}
		var list []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			f.t.Fatalf("%s list: %v: %s", rt, err, out)
		}
		for _, c := range list {
			m[c.ID] = c.Status
		}
	}
	return m
}

// removeAllBut removes every container and pod through CRI, except the
// ones named; each removal must succeed.
func (f *faultRun) removeAllBut(st *faultStats, keepPod, keepCtr string) {
	t := f.t
	ctrs, err := f.c.rs.ListContainers(f.ctx(), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ctrs.Containers {
		if c.Id == keepCtr {
			continue
		}
		if _, err := f.c.rs.RemoveContainer(f.ctx(), &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			t.Errorf("RemoveContainer %s (%v): %v\n%s", c.Id, c.State, err, f.d.out)
			continue
		}
		st.removedAfterRestart++
	}
	pods, err := f.c.rs.ListPodSandbox(f.ctx(), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Id == keepPod {
			continue
		}
		if _, err := f.c.rs.StopPodSandbox(f.ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("StopPodSandbox %s (%v): %v\n%s", p.Id, p.State, err, f.d.out)
			continue
		}
		if _, err := f.c.rs.RemovePodSandbox(f.ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			t.Errorf("RemovePodSandbox %s (%v): %v\n%s", p.Id, p.State, err, f.d.out)
			continue
		}
		st.removedAfterRestart++
	}
}

// checkSurvivor: the long-running container kept running under the same
// monitor and process, and exec reaches it.
func (f *faultRun) checkSurvivor(before *runtimeapi.ContainerStatus) {
	now := f.containerStatus(f.survivorCtr)
	if now.State != runtimeapi.ContainerState_CONTAINER_RUNNING || now.StartedAt != before.StartedAt {
		f.t.Errorf("survivor container: %v started %d, want RUNNING started %d (reason %q %q)", now.State, now.StartedAt, before.StartedAt, now.Reason, now.Message)
	}
	r, err := f.c.rs.ExecSync(f.ctx(), &runtimeapi.ExecSyncRequest{ContainerId: f.survivorCtr, Cmd: []string{"echo", "alive"}, Timeout: 10})
	if err != nil || strings.TrimSpace(string(r.GetStdout())) != "alive" {
		f.t.Errorf("exec in the survivor: %v %q", err, r.GetStdout())
	}
}

func (f *faultRun) logLines(path string) int {
	data, _ := os.ReadFile(path)
	return strings.Count(string(data), "\n")
}

// snapshot is everything a leak would show as: per kind, a sorted list
// of names.
type snapshot map[string][]string

func (s snapshot) counts() map[string]int {
	m := map[string]int{}
	for k, v := range s {
		m[k] = len(v)
	}
	return m
}

func (f *faultRun) snapshot() snapshot {
	d := f.d
	s := snapshot{
		"mounts":              f.mounts(),
		"pod run dirs":        dirNames(filepath.Join(d.runroot, "sandboxes")),
		"pod records":         dirNames(filepath.Join(d.root, "sandboxes")),
		"container records":   dirNames(filepath.Join(d.root, "containers")),
		"bundles":             dirNames(filepath.Join(d.runroot, "containers")),
		"exit files":          dirNames(filepath.Join(d.runroot, "exits")),
		"attach links":        dirNames(filepath.Join(d.runroot, "attach")),
		"runc state":          dirNames(filepath.Join(d.runroot, "runc")),
		"crun state":          dirNames(filepath.Join(d.runroot, "crun")),
		"IP leases":           leases(filepath.Join(d.root, "cni", "networks", "crib")),
		"CNI cache":           dirNames(filepath.Join(d.root, "cni", "cache", "results")),
		"storage containers":  storageContainers(d.root),
		"cgroups":             f.cg.children(),
		"crib processes":      f.processNames(),
		"zombies (>5 leaked)": f.zombies(),
	}
	f.maxZombies = max(f.maxZombies, len(s["zombies (>5 leaked)"]))
	return s
}

// expectSnapshot waits briefly for the state to settle to want (monitors
// and exec helpers take a moment to exit) and reports each difference as
// a leak.
func (f *faultRun) expectSnapshot(when string, want snapshot) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f.snapshot()
		var diffs []string
		for kind, w := range want {
			extra, missing := setDiff(got[kind], w)
			if kind == "zombies (>5 leaked)" {
				if len(got[kind]) <= 5 {
					continue
				}
				missing = nil
			}
			if len(extra) > 0 {
				diffs = append(diffs, fmt.Sprintf("%s: leaked %v", kind, extra))
			}
			if len(missing) > 0 {
				diffs = append(diffs, fmt.Sprintf("%s: lost %v", kind, missing))
			}
		}
		if len(diffs) == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			for _, d := range diffs {
				f.t.Errorf("%s: %s", when, d)
			}
			f.t.Logf("crib's output:\n%s", f.d.out)
			return len(diffs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func setDiff(got, want []string) (extra, missing []string) {
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	return extra, missing
}

func dirNames(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// leases are host-local's lease files: named by the address.
func leases(dir string) []string {
	var out []string
	for _, n := range dirNames(dir) {
		if strings.Count(n, ".") == 3 || strings.Contains(n, ":") {
			data, _ := os.ReadFile(filepath.Join(dir, n))
			out = append(out, n+"="+strings.SplitN(string(data), "\n", 2)[0])
		}
	}
	return out
}

// storageContainers lists the storage library's containers: crib makes
// them volatile (volatile-containers.json), older cribs did not.
func storageContainers(root string) []string {
	var out []string
	for _, name := range []string{"containers.json", "volatile-containers.json"} {
		data, err := os.ReadFile(filepath.Join(root, "storage", "overlay-containers", name))
		if err != nil {
			continue
		}
		var list []struct {
			ID string `json:"id"`
		}
		json.Unmarshal(data, &list)
		for _, c := range list {
			out = append(out, c.ID)
		}
	}
	return out
}

// mounts lists the mount points under crib's root and runroot in crib's
// mount namespace (the holder's).
func (f *faultRun) mounts() []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", f.d.holderPID(f.t)))
	if err != nil {
		f.t.Fatalf("reading crib's mounts: %v", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		p := fields[4]
		for _, base := range []string{f.d.root, f.d.runroot} {
			if p == base || strings.HasPrefix(p, base+"/") {
				out = append(out, strings.TrimPrefix(p, filepath.Dir(base)+"/"))
			}
		}
	}
	slices.Sort(out)
	return out
}

// cribProcesses lists the processes in crib's user namespace other than
// the holder and the daemon: monitors, reapers, containers, helpers. With
// all, the daemon is included.
func (f *faultRun) cribProcesses(all bool) []int {
	holder := f.d.holderPID(f.t)
	userns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", holder))
	if err != nil {
		f.t.Fatalf("crib's user namespace: %v", err)
	}
	daemon := 0
	if data, err := os.ReadFile(filepath.Join(f.d.runroot, "crib.pid")); err == nil && !all {
		daemon, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	var out []int
	for _, pid := range allPIDs() {
		if pid == holder || pid == daemon {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid)); err == nil && ns == userns {
			out = append(out, pid)
		}
	}
	return out
}

// processNames names crib's processes, leaving out the survivor's
// monitor and everything below it.
func (f *faultRun) processNames() []string {
	var keep int
	if f.survivorCtr != "" {
		keep = monitorOf(f.survivorCtr)
	}
	var out []string
	for _, pid := range f.cribProcesses(false) {
		if keep != 0 && descendsFrom(pid, keep) {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%s[%d] %s", strings.TrimSpace(string(comm)), pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}

// zombies are unreaped children of the test, crib's parent, its daemon
// or its holder.
func (f *faultRun) zombies() []string {
	parents := map[int]bool{os.Getpid(): true, f.d.holderPID(f.t): true}
	if f.d.cmd != nil {
		parents[f.d.cmd.Process.Pid] = true
	}
	if data, err := os.ReadFile(filepath.Join(f.d.runroot, "crib.pid")); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		parents[pid] = true
	}
	var out []string
	for _, pid := range allPIDs() {
		if procState(pid) == "Z" && parents[ppidOf(pid)] {
			out = append(out, strconv.Itoa(pid))
		}
	}
	return out
}

func monitorOf(ctr string) int {
	for _, pid := range allPIDs() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 2 && filepath.Base(args[0]) == "conmon" && slices.Contains(args, ctr) {
			return pid
		}
	}
	return 0
}

func descendsFrom(pid, ancestor int) bool {
	for i := 0; pid > 1 && i < 64; i++ {
		if pid == ancestor {
			return true
		}
		pid = ppidOf(pid)
	}
	return false
}

func ppidOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fields[1])
	return n
}

func allPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func (f *faultRun) holderHelperPID() int {
	data, err := os.ReadFile(filepath.Join(f.d.runroot, "holder.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	var h struct {
		HelperPID int `json:"helperPid"`
	}
	json.Unmarshal(data, &h)
	return h.HelperPID
}

// adoptOrphans makes the test process a child subreaper for the test's
// duration and reaps the zombies it adopts. It never waits on "any"
// child: only on zombies that stayed zombies for a second, so an
// exec.Cmd.Wait elsewhere in the test always reaps its own child first.
func adoptOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("becoming a subreaper: %v", err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		first := map[int]time.Time{}
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, pid := range childrenOfSelf() {
				if procState(pid) != "Z" {
					continue
				}
				if at, ok := first[pid]; !ok {
					first[pid] = time.Now()
				} else if time.Since(at) > time.Second {
					var ws unix.WaitStatus
					unix.Wait4(pid, &ws, unix.WNOHANG, nil)
					delete(first, pid)
				}
			}
		}
	}()
	t.Cleanup(func() {
		time.Sleep(1500 * time.Millisecond) // let the last adopted zombies age
		close(stop)
		<-done
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	})
}

func childrenOfSelf() []int {
	tasks, _ := os.ReadDir("/proc/self/task")
	var out []int
	for _, task := range tasks {
		data, _ := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "children"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

// delegatedCgroups is a cgroup v1 subtree of this test's own under the
// one scripts/cgroup-delegate.sh delegates to the test user (other tests
// may be using that one at the same time).
type delegatedCgroups struct {
	parent string   // --cgroup-parent
	dirs   []string // the subtree's directory in every hierarchy
}

func delegateCgroups(t *testing.T, u testUser) delegatedCgroups {
	_, err := os.Stat("/sys/fs/cgroup/cpu/crib-" + u.name)
	existed := err == nil
	// Retried: its chown -R races with cribs of other tests removing
	// their pod cgroups below the shared subtree.
	var out []byte
	for range 3 {
		if out, err = exec.Command("../scripts/cgroup-delegate.sh", "create", u.name).CombinedOutput(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("cgroup-delegate.sh create: %v\n%s", err, out)
	}
	leaf := fmt.Sprintf("fault-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	cg := delegatedCgroups{parent: "/crib-" + u.name + "/" + leaf}
	t.Cleanup(func() {
		for _, d := range cg.dirs {
			removeCgroupTree(t, d)
		}
		if !existed {
			exec.Command("../scripts/cgroup-delegate.sh", "remove", u.name).Run()
		}
	})
	for _, base := range strings.Fields(string(out)) {
		dir := filepath.Join(base, leaf)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cg.dirs = append(cg.dirs, dir)
		if strings.Contains(base, "/cpuset/") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, _ := os.ReadFile(filepath.Join(base, f))
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.Chown(dir, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cgroup.procs", "tasks"} {
			os.Chown(filepath.Join(dir, f), u.uid, u.gid)
		}
	}
	return cg
}

// children lists the cgroups crib left below the subtree.
func (cg delegatedCgroups) children() []string {
	var out []string
	for _, d := range cg.dirs {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != d {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func removeCgroupTree(t *testing.T, dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for _, d := range slices.Backward(dirs) {
		if err := syscall.Rmdir(d); err != nil && !os.IsNotExist(err) {
			t.Logf("removing cgroup %s: %v", d, err)
		}
	}
}
