package cri

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// nameIndex reserves the CRI names of pods and containers, which the
// kubelet requires to be unique: a name taken by a live object is an
// AlreadyExists that names the holder.
type nameIndex struct {
	mu    sync.Mutex
	names map[string]string // name → id
}

func newNameIndex() *nameIndex { return &nameIndex{names: map[string]string{}} }

func (n *nameIndex) reserve(name, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if holder, ok := n.names[name]; ok && holder != id {
		return fmt.Errorf("name %q is in use by %s: %w", name, holder, errdefs.ErrAlreadyExists)
	}
	n.names[name] = id
	return nil
}

func (n *nameIndex) release(name string) {
	n.mu.Lock()
	delete(n.names, name)
	n.mu.Unlock()
}

// podName is the kubelet's own naming of a sandbox: unique per attempt.
func podName(m *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{m.GetName(), m.GetNamespace(), m.GetUid(), fmt.Sprint(m.GetAttempt())}, "_")
}

// containerName is unique per pod, container name and attempt.
func containerName(podID string, m *runtimeapi.ContainerMetadata) string {
	return strings.Join([]string{m.GetName(), podID, fmt.Sprint(m.GetAttempt())}, "_")
}

// newID is a 64-hex-digit id, as containerd and CRI-O use.
func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
