package policysync

import (
	"sync"
	"time"
)

// kind is the kind of an API object the loop follows.
type kind uint8

const (
	kindNamespace kind = iota
	kindNode
	kindPolicy
	kindPod
)

func (k kind) String() string {
	return [...]string{"Namespace", "Node", "NetworkPolicy", "Pod"}[k]
}

// objKey names an object whose current state the next batch reads.
type objKey struct {
	kind            kind
	namespace, name string
}

func (k objKey) String() string {
	if k.namespace == "" {
		return k.kind.String() + " " + k.name
	}
	return k.kind.String() + " " + k.namespace + "/" + k.name
}

// queue holds the keys of changed objects until the worker takes them as
// a batch.
type queue struct {
	mu      sync.Mutex
	pending map[objKey]struct{}
	since   time.Time // receipt of the oldest pending change
	started uint64    // batches taken
	wake    chan struct{}
}

func newQueue() *queue {
	return &queue{pending: map[objKey]struct{}{}, wake: make(chan struct{}, 1)}
}

// add records changed objects, wakes the worker, and returns the number
// of the batch that will read them.
func (q *queue) add(keys ...objKey) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(keys) > 0 {
		if len(q.pending) == 0 && q.since.IsZero() {
			q.since = time.Now()
		}
		for _, k := range keys {
			q.pending[k] = struct{}{}
		}
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return q.started + 1
}

// take returns the pending keys as a batch, with its number and the
// receipt of its oldest change.
func (q *queue) take() (keys map[objKey]struct{}, batch uint64, since time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	keys, since = q.pending, q.since
	q.pending, q.since = map[objKey]struct{}{}, time.Time{}
	q.started++
	return keys, q.started, since
}

// drop forgets what is pending: the initial load reads everything.
func (q *queue) drop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	clear(q.pending)
}
