package cni

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/sluice-dev/sluice/internal/fsutil"
)

const (
	stateFileName = "state.json"
	lockFileName  = "lock"
	stateVersion  = 1

	// lockTimeout bounds the wait for another plugin's lock. Holders only
	// read, decide and write a small file, so this is only reached when a
	// holder is stuck (a dead disk): better a retryable error than a
	// runtime blocked for ever.
	lockTimeout = 30 * time.Second
)

// Reservation is one address held by one attachment (containerID, ifName).
type Reservation struct {
	IP          netip.Addr `json:"ip"`
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifName"`
}

// stateFile is the content of <stateDir>/state.json.
type stateFile struct {
	Version      int           `json:"version"`
	Reservations []Reservation `json:"reservations"`
}

// ExhaustedError says that a family has no address left for a new pod.
type ExhaustedError struct {
	// Usable is how many pods of the family this node can hold: the
	// addresses of its CIDRs less the excluded ones, capped by maxPods.
	Usable int
	// Family is "IPv4" or "IPv6".
	Family string
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("pool exhausted on this node: all %d addresses in use (%s)", e.Usable, e.Family)
}

// LockTimeoutError says that another process held the state lock too long.
type LockTimeoutError struct{ Path string }

func (e *LockTimeoutError) Error() string {
	return fmt.Sprintf("another sluice-cni has held %s for more than %s", e.Path, lockTimeout)
}

// Store is the allocator's state, held under the exclusive lock from
// OpenStore until Close. Changes stay in memory until Save.
type Store struct {
	dir   string
	lock  *os.File
	state stateFile
}

// OpenStore creates stateDir if needed, takes the exclusive flock on
// <stateDir>/lock (waiting for other plugins) and loads state.json. The
// caller must Close the store; a process that dies holding it loses the
// lock with its file descriptors.
func OpenStore(stateDir string) (*Store, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	lockPath := filepath.Join(stateDir, lockFileName)
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flockWithTimeout(f, lockTimeout); err != nil {
		_ = f.Close()
		return nil, err
	}
	s := &Store{dir: stateDir, lock: f}
	st, err := readState(stateDir)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	s.state = st
	return s, nil
}

func flockWithTimeout(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		case time.Now().After(deadline):
			return &LockTimeoutError{Path: f.Name()}
		}
		time.Sleep(wait)
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Close releases the lock. Unsaved changes are dropped.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the only descriptor drops the flock
	s.lock = nil
	return err
}

// Save writes the state atomically: temporary file, fsync, rename, fsync of
// the directory.
func (s *Store) Save() error {
	s.state.Version = stateVersion
	if s.state.Reservations == nil {
		s.state.Reservations = []Reservation{}
	}
	slices.SortFunc(s.state.Reservations, func(a, b Reservation) int { return a.IP.Compare(b.IP) })
	data, err := json.MarshalIndent(s.state, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(s.dir, stateFileName), append(data, '\n'), 0o644)
}

// Reservations returns a copy of all reservations, ordered by address.
func (s *Store) Reservations() []Reservation {
	out := slices.Clone(s.state.Reservations)
	slices.SortFunc(out, func(a, b Reservation) int { return a.IP.Compare(b.IP) })
	return out
}

// Lookup returns the addresses the attachment holds, IPv4 first.
func (s *Store) Lookup(containerID, ifName string) []netip.Addr {
	var out []netip.Addr
	for _, r := range s.state.Reservations {
		if r.ContainerID == containerID && r.IfName == ifName {
			out = append(out, r.IP)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Reserve returns the addresses of the attachment: the ones it already
// holds (reused is true: a retried ADD), or else one new address per family
// of the allocation, each the lowest that is inside the allocation's CIDRs,
// not excluded and not reserved, with at most maxPods reservations per
// family. It reserves either every family or none; an *ExhaustedError says
// which family ran out.
func (s *Store) Reserve(a Allocation, containerID, ifName string) (ips []netip.Addr, reused bool, err error) {
	if held := s.Lookup(containerID, ifName); len(held) > 0 {
		return held, true, nil
	}
	p, err := a.parse()
	if err != nil {
		return nil, false, err
	}
	if len(p.prefixes) == 0 {
		return nil, false, errors.New("the allocation has no CIDRs")
	}
	reserved := make(map[netip.Addr]bool, len(s.state.Reservations))
	perFamily := map[bool]int{}
	for _, r := range s.state.Reservations {
		reserved[r.IP] = true
		perFamily[r.IP.Is4()]++
	}
	for _, is4 := range []bool{true, false} {
		family := familyPrefixes(p.prefixes, is4)
		if len(family) == 0 {
			continue
		}
		usable := usableCount(family, p.exclude, p.maxPods)
		if p.maxPods > 0 && perFamily[is4] >= p.maxPods {
			return nil, false, &ExhaustedError{Usable: usable, Family: familyName(is4)}
		}
		ip, ok := lowestFree(family, p.exclude, reserved)
		if !ok {
			return nil, false, &ExhaustedError{Usable: usable, Family: familyName(is4)}
		}
		ips = append(ips, ip)
	}
	for _, ip := range ips {
		s.state.Reservations = append(s.state.Reservations, Reservation{IP: ip, ContainerID: containerID, IfName: ifName})
	}
	return ips, false, nil
}

// Release drops the reservations of the attachment and returns their
// addresses (none for an unknown attachment).
func (s *Store) Release(containerID, ifName string) []netip.Addr {
	return s.releaseIf(func(r Reservation) bool { return r.ContainerID == containerID && r.IfName == ifName })
}

// ReleaseExcept drops every reservation whose attachment is not in valid
// and returns what it dropped.
func (s *Store) ReleaseExcept(valid map[Attachment]bool) []Reservation {
	var dropped []Reservation
	s.releaseIf(func(r Reservation) bool {
		if valid[Attachment{ContainerID: r.ContainerID, IfName: r.IfName}] {
			return false
		}
		dropped = append(dropped, r)
		return true
	})
	return dropped
}

// Attachment names one interface of one container, as the CNI runtime does.
type Attachment struct {
	ContainerID string
	IfName      string
}

func (s *Store) releaseIf(drop func(Reservation) bool) []netip.Addr {
	var released []netip.Addr
	kept := s.state.Reservations[:0]
	for _, r := range s.state.Reservations {
		if drop(r) {
			released = append(released, r.IP)
			continue
		}
		kept = append(kept, r)
	}
	s.state.Reservations = kept
	return released
}

// InUse reports the addresses reserved on this node, ordered, for the node
// side that publishes ipsInUse and releases batches nobody uses. It reads
// state.json without taking the lock: every write is an atomic rename, so
// the read sees one whole state. A missing state means nothing is in use.
func InUse(stateDir string) ([]netip.Addr, error) {
	rs, err := Reservations(stateDir)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.IP)
	}
	return out, nil
}

// Reservations reads every reservation in stateDir, ordered by address,
// without taking the lock (see InUse).
func Reservations(stateDir string) ([]Reservation, error) {
	st, err := readState(stateDir)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(st.Reservations)
	slices.SortFunc(out, func(a, b Reservation) int { return a.IP.Compare(b.IP) })
	return out, nil
}

func readState(stateDir string) (stateFile, error) {
	path := filepath.Join(stateDir, stateFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return stateFile{}, fmt.Errorf("read allocator state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		// Never start over from an empty state: that would hand out
		// addresses that running pods hold.
		return stateFile{}, fmt.Errorf("allocator state %s is corrupt (fix or remove it by hand once no pod uses its addresses): %w", path, err)
	}
	if st.Version != stateVersion {
		return stateFile{}, fmt.Errorf("allocator state %s has version %d, this plugin reads version %d", path, st.Version, stateVersion)
	}
	for _, r := range st.Reservations {
		if !r.IP.IsValid() || r.ContainerID == "" || r.IfName == "" {
			return stateFile{}, fmt.Errorf("allocator state %s has an incomplete reservation %+v", path, r)
		}
	}
	return st, nil
}

func familyPrefixes(all []netip.Prefix, is4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range all {
		if p.Addr().Is4() == is4 {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return out
}

func familyName(is4 bool) string {
	if is4 {
		return "IPv4"
	}
	return "IPv6"
}

// lowestFree walks the prefixes in address order. It stops at the first
// free address, so it looks at no more than len(exclude)+len(reserved)+1
// addresses however large the prefixes are.
func lowestFree(prefixes []netip.Prefix, exclude, reserved map[netip.Addr]bool) (netip.Addr, bool) {
	for _, p := range prefixes {
		for ip := p.Addr(); ip.IsValid() && p.Contains(ip); ip = ip.Next() {
			if !exclude[ip] && !reserved[ip] {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// usableCount is the number of addresses in prefixes less the excluded
// ones, capped by maxPods (when set) and by the largest int.
func usableCount(prefixes []netip.Prefix, exclude map[netip.Addr]bool, maxPods int) int {
	const maxBits = 62
	total := 0
	for _, p := range prefixes {
		hostBits := p.Addr().BitLen() - p.Bits()
		if hostBits >= maxBits || total >= 1<<maxBits {
			total = 1 << maxBits
			break
		}
		total += 1 << hostBits
	}
	for ip := range exclude {
		for _, p := range prefixes {
			if p.Contains(ip) {
				total--
				break
			}
		}
	}
	if maxPods > 0 {
		total = min(total, maxPods)
	}
	return max(total, 0)
}
