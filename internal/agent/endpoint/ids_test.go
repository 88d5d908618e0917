package endpoint

import (
	"encoding/json"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestIDTable(t *testing.T) {
	ip := netip.MustParseAddr
	set := func(eps ...string) map[netip.Addr]string {
		m := map[netip.Addr]string{}
		for i := 0; i < len(eps); i += 2 {
			m[ip(eps[i+1])] = eps[i]
		}
		return m
	}
	a, b, c := idKey("ns/a", ip("10.0.0.1")), idKey("ns/b", ip("10.0.0.2")), idKey("ns/c", ip("10.0.0.3"))
	var ids idTable
	ids.assign(set("ns/a", "10.0.0.1", "ns/b", "10.0.0.2"))
	if ids.IDs[a] != 1 || ids.IDs[b] != 2 {
		t.Fatalf("ids %v", ids.IDs)
	}
	if ids.assign(set("ns/a", "10.0.0.1", "ns/b", "10.0.0.2")) {
		t.Error("no change reported as a change")
	}
	ids.assign(set("ns/b", "10.0.0.2", "ns/c", "10.0.0.3"))
	if _, ok := ids.IDs[a]; ok || ids.IDs[b] != 2 || ids.IDs[c] != 3 {
		t.Fatalf("after a left and c came: %v", ids.IDs)
	}
	all := set("ns/a", "10.0.0.1", "ns/b", "10.0.0.2", "ns/c", "10.0.0.3")
	ids.assign(all)
	if ids.IDs[a] != 4 {
		t.Errorf("a's old ID reused or skipped: %v", ids.IDs)
	}
	if got := ids.of(all); got[ip("10.0.0.1")] != 4 || got[ip("10.0.0.3")] != 3 || len(got) != 3 {
		t.Errorf("of: %v", got)
	}
	// A table from a state file without next continues above its IDs.
	loaded := idTable{IDs: maps.Clone(ids.IDs)}
	all[ip("10.0.0.4")] = "ns/d"
	loaded.assign(all)
	if loaded.IDs["ns/d|10.0.0.4"] != 5 || loaded.IDs[a] != 4 {
		t.Errorf("loaded table: %v", loaded.IDs)
	}
}

// TestStateFileOfThePreviousRelease: a state file as the agent before the
// registry's split wrote it loads with its registrations and IDs, and is
// written back in the same shape.
func TestStateFileOfThePreviousRelease(t *testing.T) {
	const old = `{
  "version": 1,
  "endpoints": [
    {
      "containerID": "c1",
      "namespace": "default",
      "name": "web",
      "ifName": "eth0",
      "ips": ["10.0.0.5", "fd00::5"],
      "hostIfName": "slc0123456789a",
      "hostIfIndex": 12
    }
  ],
  "ids": {"ids": {"default/web|10.0.0.5": 3, "default/web|fd00::5": 4}, "next": 5}
}
`
	path := filepath.Join(t.TempDir(), "agent-state.json")
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := readState(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(path, st)
	r := s.get("c1")
	if r == nil || r.podKey() != "default/web" || len(r.IPs) != 2 || r.HostIfIndex != 12 || r.HostIfName != "slc0123456789a" {
		t.Fatalf("registration %+v", r)
	}
	local := map[netip.Addr]string{netip.MustParseAddr("10.0.0.5"): "default/web", netip.MustParseAddr("fd00::5"): "default/web"}
	ids, err := s.assignIDs(local)
	if err != nil || ids[netip.MustParseAddr("10.0.0.5")] != 3 || ids[netip.MustParseAddr("fd00::5")] != 4 {
		t.Fatalf("IDs %v, %v: the old table's IDs are lost", ids, err)
	}
	if err := s.put(&registration{ContainerID: "c1", Endpoint: r.Endpoint}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gotJSON, wantJSON any
	if err := json.Unmarshal(got, &gotJSON); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(old), &wantJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotJSON, wantJSON) {
		t.Errorf("rewritten state file:\n%s\nwant the same content as:\n%s", got, old)
	}
}
