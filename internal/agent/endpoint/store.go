package endpoint

import (
	"maps"
	"net/netip"
	"sync"
)

// store holds the registrations and the ID table, and writes both to the
// state file at every change.
type store struct {
	mu   sync.Mutex
	path string // "": nothing persisted (tests)
	regs map[string]*registration
	seq  uint64 // registrations made; orders those of one pod
	ids  idTable
}

func newStore(path string, st stateFile) *store {
	s := &store{path: path, regs: map[string]*registration{}, ids: st.IDs}
	for i := range st.Endpoints {
		r := st.Endpoints[i]
		s.seq++
		r.seq = s.seq
		s.regs[r.ContainerID] = &r
	}
	return s
}

// put records r (replacing the container's registration, if any) and
// saves.
func (s *store) put(r *registration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	r.seq = s.seq
	s.regs[r.ContainerID] = r
	return s.persistLocked()
}

// removeIf forgets the container's registration if it is r (any, when r
// is nil) and saves; it returns what it removed.
func (s *store) removeIf(cid string, r *registration) (*registration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.regs[cid]
	if cur == nil || (r != nil && cur != r) {
		return nil, nil
	}
	delete(s.regs, cid)
	return cur, s.persistLocked()
}

func (s *store) get(cid string) *registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.regs[cid]
}

func (s *store) all() map[string]*registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.regs)
}

// registeredIPs are the registered addresses of each pod, from its latest
// registration.
func (s *store) registeredIPs() map[string][]netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	latest := map[string]*registration{}
	for _, r := range s.regs {
		if old := latest[r.podKey()]; old == nil || old.seq < r.seq {
			latest[r.podKey()] = r
		}
	}
	out := make(map[string][]netip.Addr, len(latest))
	for k, r := range latest {
		out[k] = r.IPs
	}
	return out
}

// assignIDs makes the ID table hold exactly local (address -> pod),
// saving it when it changed, and returns their IDs.
func (s *store) assignIDs(local map[netip.Addr]string) (map[netip.Addr]uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.ids.assign(local) {
		err = s.persistLocked()
	}
	return s.ids.of(local), err
}

func (s *store) persistLocked() error {
	if s.path == "" {
		return nil
	}
	return writeState(s.path, s.regs, s.ids)
}
