package cri

import "sync"

// podLocks serialises the RPCs that change what runs in a pod against the
// ones that end the pod. CreateContainer, StartContainer and
// RemoveContainer hold a pod's lock shared for their whole length, so many
// run at once; StopPodSandbox
// and RemovePodSandbox hold it exclusive. A stop therefore waits for every
// create that already passed its "pod is ready" check to record its
// container (and so sees it), and a create or start that comes after the
// stop sees the pod not ready and refuses.
type podLocks struct {
	mu    sync.Mutex
	locks map[string]*podLock
}

type podLock struct {
	rw   sync.RWMutex
	refs int // holders and waiters; the entry goes when it reaches 0
}

func newPodLocks() *podLocks { return &podLocks{locks: map[string]*podLock{}} }

// shared takes id's lock for a change inside the pod; call the result to
// release it.
func (p *podLocks) shared(id string) func() {
	l := p.ref(id)
	l.rw.RLock()
	return func() {
		l.rw.RUnlock()
		p.unref(id, l)
	}
}

// exclusive takes id's lock to end the pod; call the result to release it.
func (p *podLocks) exclusive(id string) func() {
	l := p.ref(id)
	l.rw.Lock()
	return func() {
		l.rw.Unlock()
		p.unref(id, l)
	}
}

func (p *podLocks) ref(id string) *podLock {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.locks[id]
	if l == nil {
		l = &podLock{}
		p.locks[id] = l
	}
	l.refs++
	return l
}

func (p *podLocks) unref(id string, l *podLock) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(p.locks, id)
	}
}

// size is how many pods have a lock entry (for tests: none may leak).
func (p *podLocks) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.locks)
}
