package plugin

import (
	"errors"
	"io/fs"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/sluice-dev/sluice/internal/cni"
)

func TestIsHostVethName(t *testing.T) {
	for name, want := range map[string]bool{
		cni.HostVethName("slc", "abc", "eth0"): true,
		"slc0123456789a":                       true,
		"slc0123456789":                        false, // too short
		"slc0123456789ab":                      false, // too long
		"slcadmin":                             false,
		"slczzzzzzzzzzz":                       false,
		"abc0123456789a":                       false,
		"slc0123456789A":                       false,
	} {
		if got := isHostVethName("slc", name); got != want {
			t.Errorf("isHostVethName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestStoreErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code uint
	}{
		{&cni.ExhaustedError{Usable: 2, Family: "IPv4"}, types.ErrTryAgainLater},
		{&cni.LockTimeoutError{Path: "/x/lock"}, types.ErrTryAgainLater},
		{fs.ErrPermission, types.ErrIOFailure},
	} {
		var cniErr *types.Error
		if !errors.As(storeError("reserve", tc.err), &cniErr) || cniErr.Code != tc.code {
			t.Errorf("%v: got %v, want code %d", tc.err, cniErr, tc.code)
		}
	}
}

func TestNoAllocationMessages(t *testing.T) {
	conf := &cni.Config{AllocationFile: "/run/sluice/allocation.json"}
	if got := noAllocationMsg(conf, fs.ErrNotExist); got != "no allocation for this node yet (allocation file /run/sluice/allocation.json missing: the node agent has not received this node's addresses)" {
		t.Errorf("missing: %q", got)
	}
	if got := noAllocationMsg(conf, errors.New("boom")); !strings.Contains(got, "unreadable: boom") {
		t.Errorf("unreadable: %q", got)
	}
	if got := noAllocationMsg(conf, nil); !strings.Contains(got, "has no CIDRs") {
		t.Errorf("no CIDRs: %q", got)
	}
}

func TestPodRoutes(t *testing.T) {
	v4 := podRoutes(7, netip.MustParseAddr("10.0.0.1"))
	if len(v4) != 2 || v4[0].Dst.String() != "169.254.1.1/32" || v4[1].Dst.String() != "0.0.0.0/0" || !v4[1].Gw.Equal(GatewayIPv4) {
		t.Errorf("IPv4 routes %v", v4)
	}
	v6 := podRoutes(7, netip.MustParseAddr("fd00::1"))
	if len(v6) != 1 || v6[0].Dst.String() != "::/0" || !v6[0].Gw.Equal(GatewayIPv6) {
		t.Errorf("IPv6 routes %v", v6)
	}
}
