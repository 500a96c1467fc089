package testvault

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// A key written before the active node dies is still there after the
// election, read through every node left.
func TestClusterSurvivesItsActiveNode(t *testing.T) {
	c := StartCluster(t, 3)
	active, err := c.WaitActive(-1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Nodes[active].EnableTransit("transit", "k")
	c.Nodes[active].Kill()
	next, err := c.WaitActive(active, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if next == active {
		t.Fatalf("node %d is still the active one after it was killed", active)
	}
	for i, s := range c.Nodes {
		if i == active {
			continue
		}
		sec, err := s.Client().Logical().Read("transit/keys/k")
		if err != nil || sec == nil {
			t.Errorf("node %d: read the key written before the failover: %v", i, err)
		}
	}
}

func TestExtraListenerServesWithItsLimits(t *testing.T) {
	s := Start(t, Options{ExtraListener: "max_json_array_element_count = 2"})
	s.EnableTransit("transit", "k")
	c := s.Client()
	if err := c.SetAddress(s.ExtraAddr); err != nil {
		t.Fatal(err)
	}
	items := func(n int) []map[string]any {
		l := make([]map[string]any, n)
		for i := range l {
			l[i] = map[string]any{"plaintext": "aGVsbG8="}
		}
		return l
	}
	tests := []struct {
		items   int
		wantErr bool
	}{{2, false}, {3, true}}
	for _, tt := range tests {
		_, err := c.Logical().Write("transit/encrypt/k", map[string]any{"batch_input": items(tt.items)})
		if (err != nil) != tt.wantErr {
			t.Errorf("a batch of %d items on a listener allowing 2: error %v, want error %t", tt.items, err, tt.wantErr)
		}
	}
}

// A dev server's second listener with a serving certificate answers over
// TLS, verified with the certificate's CA, and speaks HTTP/2 as
// production Vault does.
func TestExtraListenerServesTLS(t *testing.T) {
	// A -dev-tls server writes a CA and a certificate for 127.0.0.1 that
	// the second server can serve with.
	issuer := Start(t, Options{TLS: true})
	d := issuer.Dir
	s := Start(t, Options{ExtraTLS: &ServingCert{
		CertFile: filepath.Join(d, "vault-cert.pem"), KeyFile: filepath.Join(d, "vault-key.pem"), CAFile: issuer.CACert,
	}})
	if !strings.HasPrefix(s.ExtraAddr, "https://") {
		t.Fatalf("ExtraAddr %q, want https", s.ExtraAddr)
	}
	c, err := api.NewClient(s.ExtraConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(s.RootToken)
	res, err := c.RawRequest(c.NewRequest("GET", "/v1/sys/health"))
	if err != nil {
		t.Fatalf("health over the TLS listener: %v", err)
	}
	defer res.Body.Close()
	if res.Proto != "HTTP/2.0" {
		t.Errorf("protocol %q over the TLS listener, want HTTP/2.0", res.Proto)
	}
	plain, err := api.NewClient(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.SetAddress(strings.Replace(s.ExtraAddr, "https://", "http://", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Sys().SealStatus(); err == nil {
		t.Error("plain HTTP to the TLS listener succeeded, want a refusal")
	}
}
