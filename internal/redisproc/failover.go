package redisproc

// Failing a Redis Cluster's masters over, killing and restarting its
// nodes: the faults the cluster suites inject.

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Masters returns the addresses of the masters serving slots, as the first
// running node sees them.
func (c *Cluster) Masters(ctx context.Context) ([]string, error) {
	nodes, err := c.view(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		if n.Master && n.Slots > 0 && !n.Failed {
			out = append(out, n.Addr)
		}
	}
	return out, nil
}

// view is CLUSTER NODES as seen by a running node.
func (c *Cluster) view(ctx context.Context) ([]NodeInfo, error) {
	alive := c.alive()
	if len(alive) == 0 {
		return nil, errors.New("no cluster node is running")
	}
	return Nodes(ctx, alive[0].addr())
}

// replicaOf returns the address of a running, linked replica of master.
func (c *Cluster) replicaOf(ctx context.Context, master string) (string, error) {
	nodes, err := c.view(ctx)
	if err != nil {
		return "", err
	}
	id := ""
	for _, n := range nodes {
		if n.Addr == master && n.Master {
			id = n.ID
		}
	}
	if id == "" {
		return "", fmt.Errorf("%s is not a master of the cluster", master)
	}
	for _, n := range nodes {
		if n.MasterID == id && !n.Failed && c.PID(n.Addr) != 0 {
			return n.Addr, nil
		}
	}
	return "", fmt.Errorf("master %s has no running replica", master)
}

// Failover promotes a replica of master with CLUSTER FAILOVER (the
// coordinated, lossless manual failover: the master stops writes until the
// replica has its whole stream) and returns once the replica is master in
// every running node's view, the old master has become its replica, and the
// cluster is ok. It returns the new master's address.
func (c *Cluster) Failover(ctx context.Context, master string) (string, error) {
	replica, err := c.replicaOf(ctx, master)
	if err != nil {
		return "", err
	}
	rc := nodeClient(replica)
	err = rc.ClusterFailover(ctx).Err()
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("CLUSTER FAILOVER at %s: %w", replica, err)
	}
	return replica, c.awaitPromoted(ctx, replica)
}

// KillMaster SIGKILLs the process of master (by its PID) and returns once a
// replica of it has been elected master in every running node's view and
// the cluster is ok again: until then the killed master's slots refuse
// commands (CLUSTERDOWN). It returns the new master's address. The killed
// node stays down until Restart.
func (c *Cluster) KillMaster(ctx context.Context, master string) (string, error) {
	nodes, err := c.view(ctx)
	if err != nil {
		return "", err
	}
	id := ""
	for _, n := range nodes {
		if n.Addr == master && n.Master && n.Slots > 0 {
			id = n.ID
		}
	}
	var replicas []string
	for _, n := range nodes {
		if id != "" && n.MasterID == id && !n.Failed && c.PID(n.Addr) != 0 {
			replicas = append(replicas, n.Addr)
		}
	}
	if len(replicas) == 0 {
		return "", fmt.Errorf("%s is not a master with a running replica", master)
	}
	c.mu.Lock()
	var victim *clusterNode
	for _, n := range c.nodes {
		if n.addr() == master && n.alive {
			victim = n
		}
	}
	if victim != nil {
		victim.proc.Stop()
		victim.alive = false
	}
	c.mu.Unlock()
	if victim == nil {
		return "", fmt.Errorf("%s is not a running node of the cluster", master)
	}
	// Wait for the election: one of the replicas becomes a master with
	// slots in every running node's view.
	for {
		for _, r := range replicas {
			if c.checkMaster(ctx, r) == nil {
				return r, c.awaitPromoted(ctx, r)
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no replica of the killed master %s (%v) was promoted: %w", master, replicas, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// awaitPromoted waits until every running node sees addr as a master
// serving slots, and the cluster is ok.
func (c *Cluster) awaitPromoted(ctx context.Context, addr string) error {
	for {
		err := c.checkMaster(ctx, addr)
		if err == nil {
			err = c.check(ctx)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not promoted: %w", addr, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) checkMaster(ctx context.Context, addr string) error {
	for _, n := range c.alive() {
		nodes, err := Nodes(ctx, n.addr())
		if err != nil {
			return err
		}
		ok := false
		for _, v := range nodes {
			if v.Addr == addr && v.Master && v.Slots > 0 && !v.Failed {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("%s does not see %s as a master with slots yet", n.addr(), addr)
		}
	}
	return nil
}

// Restart starts the killed node at addr again on its ports and data
// directory (its nodes.conf): it rejoins the cluster and, its slots having
// moved to its promoted replica, becomes that master's replica. It returns
// once the node is a linked replica and the cluster is ok.
func (c *Cluster) Restart(ctx context.Context, addr string) error {
	c.mu.Lock()
	var n *clusterNode
	for _, v := range c.nodes {
		if v.addr() == addr && !v.alive {
			n = v
		}
	}
	c.mu.Unlock()
	if n == nil {
		return fmt.Errorf("%s is not a stopped node of the cluster", addr)
	}
	c.mu.Lock()
	err := c.startNode(n, false)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	for {
		err := c.check(ctx)
		if err == nil {
			if err = c.checkMaster(ctx, addr); err == nil {
				err = fmt.Errorf("%s came back as a master", addr)
			} else {
				err = nil
			}
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restarted %s did not rejoin as a replica: %w", addr, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
