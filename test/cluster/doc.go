// Package cluster tests several nodes as one cluster: netlab nodes on one
// underlay, each with its own real agent running as its node's agent
// against one API server, and real packets between their pods.
package cluster
