package cri

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Removed containers are reclaimed in the background. RemoveContainer
// returns once no process of the container is left, its record is deleted
// and its name is free (in crib and in the image store); what is then only
// files (the runtime's state and cgroup, the bundle, the root filesystem,
// image-volume mounts) is deleted by the reclaimer. The pod's removal
// waits for its containers' reclaims, since the pod cgroup and run dir go
// only after the runtime deleted the containers' own; shutdown drains it.
// A crash in between leaves files that no record owns, which the start-up
// sweep (runtime.Manager.Recover, server's removeOrphanRootfs) removes.

// reclaimWorkers bounds the reclaims running at once: each is a runtime
// delete and a layer deletion, and a burst of removals should not starve
// the calls being served.
const reclaimWorkers = 2

// reclaimer runs and tracks the reclaims of removed containers.
type reclaimer struct {
	log   *slog.Logger
	work  Work // told of each reclaim; nil: nobody
	slots chan struct{}
	wg    sync.WaitGroup

	mu sync.Mutex
	// jobs holds each container's reclaim until it succeeded; a failed one
	// stays, for its pod's removal to run again.
	jobs map[string]*reclaimJob
}

type reclaimJob struct {
	pod     string
	run     func(context.Context) error
	claimed atomic.Bool   // whoever sets it runs the job: a worker or settle
	done    chan struct{} // closed when the first run ended
	err     error         // the first run's result, once done
}

func newReclaimer(log *slog.Logger, work Work) *reclaimer {
	if log == nil {
		log = slog.Default()
	}
	return &reclaimer{log: log, work: work, slots: make(chan struct{}, reclaimWorkers), jobs: map[string]*reclaimJob{}}
}

// add starts reclaiming container id of pod in the background.
func (r *reclaimer) add(pod, id string, run func(context.Context) error) {
	j := &reclaimJob{pod: pod, run: run, done: make(chan struct{})}
	r.mu.Lock()
	r.jobs[id] = j
	r.mu.Unlock()
	r.wg.Add(1)
	if r.work != nil {
		r.work.Begin()
	}
	go func() {
		defer r.wg.Done()
		if r.work != nil {
			defer r.work.End()
		}
		r.slots <- struct{}{}
		defer func() { <-r.slots }()
		if j.claimed.CompareAndSwap(false, true) {
			r.runFirst(context.Background(), id, j)
		}
	}()
}

// runFirst is a job's first run, by whoever claimed it.
func (r *reclaimer) runFirst(ctx context.Context, id string, j *reclaimJob) {
	j.err = j.run(ctx)
	if j.err != nil {
		r.log.Warn("reclaiming a removed container; its pod's removal tries again", "container", id, "err", j.err)
	} else {
		r.forget(id, j)
	}
	close(j.done)
}

func (r *reclaimer) forget(id string, j *reclaimJob) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs[id] == j {
		delete(r.jobs, id)
	}
}

// settle reclaims pod's containers before the pod goes: it runs itself
// those no worker has started (a pod's removal does not queue behind
// other pods'), waits for the others, and runs again those that failed.
// The caller holds the pod's lock exclusively, so no other settle of the
// pod runs at the same time.
func (r *reclaimer) settle(ctx context.Context, pod string) error {
	r.mu.Lock()
	jobs := map[string]*reclaimJob{}
	for id, j := range r.jobs {
		if j.pod == pod {
			jobs[id] = j
		}
	}
	r.mu.Unlock()
	var errs []error
	for id, j := range jobs {
		if j.claimed.CompareAndSwap(false, true) {
			r.runFirst(ctx, id, j)
		}
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if j.err == nil {
			continue
		}
		if err := j.run(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		r.forget(id, j)
	}
	return errors.Join(errs...)
}

// drain waits up to d for the reclaims running; what is left then is
// the start-up sweep's.
func (r *reclaimer) drain(d time.Duration) {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		r.log.Warn("reclaims still running at shutdown; the next start removes their leftovers")
	}
}
