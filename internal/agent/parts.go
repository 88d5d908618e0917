package agent

import (
	"io"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/agent/applier"
	"github.com/sluice-dev/sluice/internal/agent/endpoint"
	"github.com/sluice-dev/sluice/internal/agent/policysync"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/policy"
)

// Datapath is what the agent's parts need of *datapath.Datapath besides
// attaching: the applier writes snapshots, the metrics read counters.
type Datapath interface {
	Apply(*policy.Snapshot) error
	Counters(id uint32) (datapath.Counters, error)
}

// partsConfig is what assemble wires the parts from: production values
// in Run, fakes in tests.
type partsConfig struct {
	log             logr.Logger
	node            string
	reader          client.Reader // the cache the policy loop's informers fill
	dp              Datapath
	attacher        endpoint.Attacher
	statePath       string
	registerTimeout time.Duration
	retryDelay      time.Duration // 1 s when zero
}

// parts are the agent's parts, wired: the policy loop hands views to the
// applier's policy slot, the registry reads what is in force through
// policyState, and the loop reads registrations from the registry.
type parts struct {
	policy    *policysync.Sync
	applier   *applier.Applier
	slot      *applier.Slot[*policysync.View]
	endpoints *endpoint.Registry
	metrics   *agentMetrics
}

func assemble(cfg partsConfig) (*parts, error) {
	if cfg.retryDelay <= 0 {
		cfg.retryDelay = time.Second
	}
	p := &parts{applier: applier.New(cfg.log.WithName("applier"), cfg.retryDelay)}
	p.metrics = newMetrics(p, cfg.dp)
	// The applier is the only caller of Apply.
	p.slot = applier.NewSlot(p.applier, "policy", func(v *policysync.View) error { return cfg.dp.Apply(v.Snapshot) },
		applier.Metrics{Seconds: p.metrics.applySeconds, Errors: p.metrics.applyErrors})
	state := &policyState{slot: p.slot}
	reg, err := endpoint.New(endpoint.Config{
		Log: cfg.log.WithName("endpoints"), Node: cfg.node, Pods: cfg.reader, Policy: state,
		Attacher:  exclusiveAttacher{Attacher: cfg.attacher, applier: p.applier},
		StatePath: cfg.statePath, RegisterTimeout: cfg.registerTimeout,
	})
	if err != nil {
		return nil, err
	}
	p.endpoints = reg
	p.policy = policysync.New(policysync.Config{
		Log: cfg.log.WithName("policy"), Node: cfg.node, Reader: cfg.reader,
		Endpoints: reg, Output: p.slot, RetryDelay: cfg.retryDelay,
	})
	state.loop = p.policy
	return p, nil
}

// policyState is the policy as the registry sees it: the loop's batches
// and what the applier made of them.
type policyState struct {
	loop *policysync.Sync
	slot *applier.Slot[*policysync.View]
}

func (s *policyState) NotReady() string {
	if !s.loop.Synced() {
		return "the agent is starting: informer caches not synced yet"
	}
	res, _ := s.slot.Result()
	switch {
	case res.Applies == 0 && res.Err != nil:
		return "the agent is starting: applying the first policy snapshot failed: " + res.Err.Error()
	case res.Applies == 0:
		return "the agent is starting: first policy snapshot not applied yet"
	}
	return ""
}

func (s *policyState) PodChanged(namespace, name string) uint64 {
	return s.loop.PodChanged(namespace, name)
}

func (s *policyState) Enforcement() (endpoint.Enforcement, <-chan struct{}) {
	res, changed := s.slot.Result()
	var enf endpoint.Enforcement
	if res.Latest != nil {
		enf.Batch, enf.PodErrors = res.Latest.Batch, res.Latest.PodErrors
	}
	enf.Err = res.Err
	if res.InForce != nil {
		enf.Endpoints = make(map[netip.Addr]endpoint.Enforced, len(res.InForce.Endpoints))
		for ip, e := range res.InForce.Endpoints {
			enf.Endpoints[ip] = endpoint.Enforced{PodKey: e.PodKey, ID: e.ID}
		}
	}
	return enf, changed
}

// exclusiveAttacher routes the registry's writes to the datapath
// (attach, detach, sweep) through the applier, so the applier stays the
// datapath's only writer; reads go straight through.
type exclusiveAttacher struct {
	endpoint.Attacher
	applier *applier.Applier
}

func (a exclusiveAttacher) Attach(name string, ifindex int, podIPs []netip.Addr) (io.Closer, error) {
	var c io.Closer
	err := a.applier.Exclusive(func() error {
		var err error
		c, err = a.Attacher.Attach(name, ifindex, podIPs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return exclusiveCloser{c, a.applier}, nil
}

func (a exclusiveAttacher) Sweep(keep map[int]bool) error {
	return a.applier.Exclusive(func() error { return a.Attacher.Sweep(keep) })
}

// exclusiveCloser detaches through the applier.
type exclusiveCloser struct {
	io.Closer
	applier *applier.Applier
}

func (c exclusiveCloser) Close() error { return c.applier.Exclusive(c.Closer.Close) }
