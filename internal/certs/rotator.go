package certs

import (
	"context"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultRotationInterval is how often a Rotator checks when Interval is zero.
// Renewal starts with a third of a certificate's lifetime left, so hourly
// checks leave ample room for failures.
const DefaultRotationInterval = time.Hour

// retryInterval is how soon a Rotator tries again after a failure or while a
// CA bundle target is still missing; waiting a full Interval would leave a
// webhook broken for that long after a transient error at bootstrap.
const retryInterval = 30 * time.Second

// Rotator runs Ensure when started and then every Interval, so certificates
// are renewed while the manager runs. Every replica runs one: each serves
// webhooks from its own CertDir.
//
// Call Ensure once before starting the manager as well: the webhook server
// needs the files when it starts, and it starts before other runnables.
type Rotator struct {
	// Client should read from the API server directly; see Ensure.
	Client  client.Client
	Options Options
	// Interval between passes; zero means DefaultRotationInterval.
	Interval time.Duration
}

var _ manager.LeaderElectionRunnable = (*Rotator)(nil)
var _ manager.Runnable = (*Rotator)(nil)

// Start runs passes until ctx is done. A failed pass is logged and retried;
// it never stops the manager, since the certificates in place stay valid for
// a long time after renewal is first due.
func (r *Rotator) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("cert-rotator")
	ctx = ctrl.LoggerInto(ctx, log)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if ctx.Err() != nil { // both were ready and select chose the timer
			return nil
		}
		timer.Reset(r.pass(ctx))
	}
}

// pass runs Ensure once and returns the wait before the next pass.
func (r *Rotator) pass(ctx context.Context) time.Duration {
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultRotationInterval
	}
	result, err := ensure(ctx, r.Client, r.Options)
	if err != nil {
		wait := min(interval, retryInterval)
		ctrl.LoggerFrom(ctx).Error(err, "webhook certificates not ensured; retrying", "after", wait)
		return wait
	}
	if result.missingTargets > 0 {
		return min(interval, retryInterval)
	}
	return interval
}

// NeedLeaderElection is false: every replica needs its certificate files.
func (r *Rotator) NeedLeaderElection() bool { return false }
