package masquerade

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family inet) this package owns in the
// node's namespace; ChainName is its one chain.
const (
	TableName = "sluice"
	ChainName = "masquerade"
)

// Table writes Rules into the TableName table of NetNS (the caller's
// namespace when nil).
type Table struct {
	NetNS ns.NetNS
}

func (t *Table) conn() (*nftables.Conn, error) {
	if t.NetNS == nil {
		return nftables.New()
	}
	return nftables.New(nftables.WithNetNSFd(int(t.NetNS.Fd())))
}

// Write replaces the table with one holding r, in one transaction: the
// table is created (a no-op when it exists), deleted with whatever it
// held, and created again with the chain and its rules. Writing twice
// leaves what writing once does.
func (t *Table) Write(r Rules) error {
	c, err := t.conn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	c.AddTable(tbl)
	c.DelTable(tbl)
	c.AddTable(tbl)
	ch := c.AddChain(&nftables.Chain{
		Name: ChainName, Table: tbl,
		Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	// The exempt destinations return first; what is left from a local
	// range goes to the outside.
	for _, p := range r.Exempt {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: append(match(p, false), &expr.Verdict{Kind: expr.VerdictReturn})})
	}
	for _, p := range r.Sources {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: append(match(p, true), &expr.Masq{})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table inet %s: %w", TableName, err)
	}
	return nil
}

// Remove deletes the table; a missing table is no error.
func (t *Table) Remove() error {
	c, err := t.conn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	c.AddTable(tbl)
	c.DelTable(tbl)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table inet %s: %w", TableName, err)
	}
	return nil
}

// Installed counts the chains and rules the table holds (0, 0 without
// the table): what a check for duplicates needs.
func (t *Table) Installed() (chains, rules int, err error) {
	c, err := t.conn()
	if err != nil {
		return 0, 0, fmt.Errorf("nftables: %w", err)
	}
	tbl, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if err != nil {
		// The kernel answers a missing table with ENOENT.
		return 0, 0, nil //nolint:nilerr // no table: nothing installed
	}
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return 0, 0, err
	}
	for _, ch := range all {
		if ch.Table.Name != tbl.Name {
			continue
		}
		chains++
		rs, err := c.GetRules(tbl, ch)
		if err != nil {
			return 0, 0, err
		}
		rules += len(rs)
	}
	return chains, rules, nil
}

// match is the expressions matching packets of p's family whose source
// (or destination) is in p.
func match(p netip.Prefix, source bool) []expr.Any {
	proto, offset, size := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if source {
		offset = 12
	}
	if p.Addr().Is6() {
		proto, offset, size = unix.NFPROTO_IPV6, 24, 16
		if source {
			offset = 8
		}
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: size, Mask: net.CIDRMask(p.Bits(), int(size)*8), Xor: make([]byte, size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
	}
}
