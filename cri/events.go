package cri

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/runtime"
)

// eventBuffer is each subscriber's queue. A subscriber that falls this far
// behind loses events rather than slowing crib: the kubelet's Evented PLEG
// relists periodically and recovers.
const eventBuffer = 256

// eventHub fans container life-cycle events out to GetContainerEvents
// streams.
type eventHub struct {
	mu   sync.Mutex
	subs map[chan *runtimeapi.ContainerEventResponse]struct{}
	// last holds each container's latest status, so that a DELETED event
	// can still carry the status of the container it names.
	last map[string]*runtimeapi.ContainerStatus
}

func newEventHub() *eventHub {
	return &eventHub{
		subs: map[chan *runtimeapi.ContainerEventResponse]struct{}{},
		last: map[string]*runtimeapi.ContainerStatus{},
	}
}

func (h *eventHub) subscribe() chan *runtimeapi.ContainerEventResponse {
	ch := make(chan *runtimeapi.ContainerEventResponse, eventBuffer)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

func (h *eventHub) unsubscribe(ch chan *runtimeapi.ContainerEventResponse) {
	h.mu.Lock()
	delete(h.subs, ch)
	h.mu.Unlock()
}

func (h *eventHub) publish(ev *runtimeapi.ContainerEventResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default: // a slow subscriber drops this event; crib goes on
		}
	}
}

var eventTypes = map[runtime.EventType]runtimeapi.ContainerEventType{
	runtime.EventCreated: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	runtime.EventStarted: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	runtime.EventStopped: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	runtime.EventDeleted: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

// relayEvents turns the runtime's events into CRI events until the
// runtime's channel closes.
func (s *RuntimeService) relayEvents(events <-chan runtime.Event) {
	for ev := range events {
		s.events.publish(s.criEvent(ev))
		if ev.Type == runtime.EventStopped {
			s.nriStopped(context.Background(), ev.ID) // an exit is NRI's StopContainer
		}
	}
}

func (s *RuntimeService) criEvent(ev runtime.Event) *runtimeapi.ContainerEventResponse {
	resp := &runtimeapi.ContainerEventResponse{
		ContainerId:        ev.ID,
		ContainerEventType: eventTypes[ev.Type],
		CreatedAt:          ev.At.UnixNano(),
	}
	if sb, err := s.pods.Get(ev.SandboxID); err == nil {
		resp.PodSandboxStatus = podStatus(sb)
	}
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	if c, err := s.containers.Get(ev.ID); err == nil && ev.Type != runtime.EventDeleted {
		s.events.last[ev.ID] = containerStatus(c)
	}
	if st := s.events.last[ev.ID]; st != nil {
		resp.ContainersStatuses = []*runtimeapi.ContainerStatus{st}
	}
	if ev.Type == runtime.EventDeleted {
		delete(s.events.last, ev.ID)
	}
	return resp
}

// GetContainerEvents streams container life-cycle events to the kubelet's
// Evented PLEG, for as long as the client stays.
func (s *RuntimeService) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	ch := s.events.subscribe()
	defer s.events.unsubscribe(ch)
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			if ctx.Err() == context.Canceled {
				return nil
			}
			return ctx.Err()
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
