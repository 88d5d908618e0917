package status

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Defaults of the agent DaemonSet's place, as the operator's flags have them.
const (
	DefaultAgentNamespace = "sluice-system"
	DefaultAgentName      = "sluice-agent"
)

// Observed is what Gather read. A nil object was not found; a read that
// failed is in ReadErrors and its field stays empty.
type Observed struct {
	Config         *v1.DataplaneConfig
	AgentDaemonSet client.ObjectKey
	DaemonSet      *appsv1.DaemonSet
	Nodes          []v1.DataplaneNode
	Pools          []v1.IPAMPool
	NodeNetworks   []v1.NodeNetwork
	ReadErrors     []ReadError
}

// ReadError is a read that failed for a reason other than NotFound (most
// often Forbidden: the user may read some of the objects only).
type ReadError struct {
	// What was read, "Kind name" or "Kinds" for a list.
	What string
	Err  error
}

// Gather reads the dataplane's objects. The agent DaemonSet is agent
// (namespace and name). It fails only when the API server can't be reached
// or doesn't answer as one; the API server refusing a read (Forbidden) or
// not knowing a kind (its CRD not installed) is recorded in ReadErrors so the rest still shows.
func Gather(ctx context.Context, c client.Reader, agent client.ObjectKey) (*Observed, error) {
	obs := &Observed{AgentDaemonSet: agent}
	// read records a refused read and stops at the first sign that there is
	// no API server to talk to: a report of nothing but read errors would
	// bury the one line that matters.
	read := func(what string, err error) (found bool, fatal error) {
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsNotFound(err):
			return false, nil
		case !isAPIStatus(err) && !meta.IsNoMatchError(err):
			return false, fmt.Errorf("read %s: %w", what, err)
		}
		obs.ReadErrors = append(obs.ReadErrors, ReadError{What: what, Err: err})
		return false, nil
	}

	dpc := &v1.DataplaneConfig{}
	found, err := read("DataplaneConfig "+v1.DataplaneConfigName, c.Get(ctx, client.ObjectKey{Name: v1.DataplaneConfigName}, dpc))
	if err != nil {
		return nil, err
	}
	if found {
		obs.Config = dpc
	}

	ds := &appsv1.DaemonSet{}
	if found, err = read("DaemonSet "+agent.String(), c.Get(ctx, agent, ds)); err != nil {
		return nil, err
	} else if found {
		obs.DaemonSet = ds
	}

	var nodes v1.DataplaneNodeList
	if _, err := read("DataplaneNodes", c.List(ctx, &nodes)); err != nil {
		return nil, err
	}
	obs.Nodes = nodes.Items

	var pools v1.IPAMPoolList
	if _, err := read("IPAMPools", c.List(ctx, &pools)); err != nil {
		return nil, err
	}
	obs.Pools = pools.Items

	var nns v1.NodeNetworkList
	if _, err := read("NodeNetworks", c.List(ctx, &nns)); err != nil {
		return nil, err
	}
	obs.NodeNetworks = nns.Items
	return obs, nil
}

// isAPIStatus reports whether err is the API server's answer, as opposed to
// not reaching it.
func isAPIStatus(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status)
}
