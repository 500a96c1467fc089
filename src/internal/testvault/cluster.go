package testvault

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"
)

// Cluster is a Vault HA cluster of raft nodes on 127.0.0.1, initialised,
// unsealed and joined, for tests that kill its active node.
type Cluster struct {
	Nodes     []*Server
	RootToken string
}

// StartCluster starts n raft nodes (n >= 1), initialises the first,
// joins the others to it and unseals all; every node is stopped when the
// test ends. Elections use raft's shortest timers (performance_multiplier
// 1), as a dev server does, so that a test sees a failover in seconds.
func StartCluster(t TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("a cluster needs at least one node, not %d", n)
	}
	c := &Cluster{}
	for i := range n {
		s := &Server{t: t, Dir: t.TempDir()}
		apiAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		clusterAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		cfg := fmt.Sprintf(`storage "raft" {
  path = %q
  node_id = "node%d"
  performance_multiplier = 1
}
listener "tcp" {
  address = %q
  cluster_address = %q
  tls_disable = true
}
api_addr = "http://%s"
cluster_addr = "https://%s"
disable_mlock = true
`, filepath.Join(s.Dir, "raft"), i, apiAddr, clusterAddr, apiAddr, clusterAddr)
		if err := os.MkdirAll(filepath.Join(s.Dir, "raft"), 0o700); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(s.Dir, "vault.hcl")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Addr = "http://" + apiAddr
		s.args = []string{"server", "-config=" + cfgPath}
		s.Start()
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
	}
	leader := c.Nodes[0]
	leader.initialize()
	c.RootToken = leader.RootToken
	// New nodes join as non-voters until autopilot finds them stable;
	// a non-voter cannot win an election, so shorten that wait.
	leader.Write("sys/storage/raft/autopilot/configuration", map[string]any{"server_stabilization_time": "1s"})
	for _, s := range c.Nodes[1:] {
		s.RootToken, s.unsealKey = leader.RootToken, leader.unsealKey
		if _, err := s.rawClient("").Sys().RaftJoin(&api.RaftJoinRequest{LeaderAPIAddr: leader.Addr}); err != nil {
			t.Fatalf("join %s to the cluster at %s: %v", s.Addr, leader.Addr, err)
		}
		s.unseal()
	}
	c.waitVoters(leader, 60*time.Second)
	return c
}

// waitVoters waits until every node is a voter in the raft configuration.
func (c *Cluster) waitVoters(leader *Server, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	var voters int
	for time.Now().Before(deadline) {
		sec, err := leader.Client().Logical().Read("sys/storage/raft/configuration")
		if err == nil && sec != nil {
			cfg, _ := sec.Data["config"].(map[string]any)
			servers, _ := cfg["servers"].([]any)
			voters = 0
			for _, sv := range servers {
				if m, _ := sv.(map[string]any); m["voter"] == true {
					voters++
				}
			}
			if voters == len(c.Nodes) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	leader.t.Fatalf("the raft cluster has %d voters of %d nodes after %s", voters, len(c.Nodes), timeout)
}

// Active is the index of the node that says it is the active one, or an
// error when none does (during an election).
func (c *Cluster) Active() (int, error) {
	for i, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		l, err := s.rawClient("").Sys().Leader()
		if err == nil && l.IsSelf && l.HAEnabled {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no node of %d is active", len(c.Nodes))
}

// WaitActive waits up to timeout for a node other than not (-1 for any)
// to be active and to serve a request that needs the active node.
func (c *Cluster) WaitActive(not int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		i, err := c.Active()
		if err == nil && i != not {
			if _, err = c.Nodes[i].Client().Sys().ListMounts(); err == nil {
				return i, nil
			}
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return -1, fmt.Errorf("no new active node within %s: %v", timeout, last)
}
