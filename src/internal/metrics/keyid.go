package metrics

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// keyIDInfo is the key_id in use, as one series whose label is a hash of
// it: nodes that disagree show as different labels, while the key_id, whose
// readable prefix names the key and version, stays out of the monitoring
// system, and a rotation replaces the series rather than adding one.
type keyIDInfo struct {
	mu     sync.Mutex // orders Reset and Set against a concurrent change
	series *prometheus.GaugeVec
}

// KeyID exports the key_id the plugin now reports in Status; the kms core
// calls it whenever its key snapshot's key_id changes.
func (m *Metrics) KeyID(keyID string) {
	m.keyID.mu.Lock()
	defer m.keyID.mu.Unlock()
	m.keyID.series.Reset()
	m.keyID.series.WithLabelValues(KeyIDHash(keyID)).Set(1)
}

// KeyIDHash is the key_id_info label of a key_id: 12 hex digits (48 bits)
// of its SHA-256, enough that two key_ids in one cluster never collide.
func KeyIDHash(keyID string) string {
	sum := sha256.Sum256([]byte(keyID))
	return hex.EncodeToString(sum[:])[:12]
}
