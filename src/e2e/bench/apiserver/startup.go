package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	kmstypes "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// startup is the start-up of one configuration with the stored Secrets.
type startup struct {
	provider string
	runs     []startRun
}

// startRun is one apiserver start: from the process's start to /readyz,
// and on to a full LIST that returns every Secret.
type startRun struct {
	ready, total time.Duration
	cacheInit    time.Duration // apiserver_watch_cache_initialization_duration_seconds of secrets
	decrypts     stat          // apiserver_storage_transformation_duration_seconds, from_storage
	kms          stat          // the apiserver's KMS calls (all methods)
	pluginCalls  float64       // gRPC calls the plugin answered
	vaultReqs    float64       // the plugin's requests to Vault
	apiCPU       time.Duration
	pluginCPU    time.Duration
	vaultCPU     time.Duration
}

// median is the run with the median total (the lower middle of an even
// count).
func (s *startup) median() startRun {
	runs := slices.Clone(s.runs)
	slices.SortFunc(runs, func(a, b startRun) int { return int(a.total - b.total) })
	return runs[(len(runs)-1)/2]
}

// dekCount is what etcd holds of the KMS v2 start-up data.
type dekCount struct {
	objects, deks, keyIDs int
}

// startData is one configuration's stored Secrets: its etcd prefix and
// the providers whose start-up is measured on it.
type startData struct {
	prefix    string
	providers []string
}

var namespaces = []string{"team-0", "team-1", "team-2", "team-3", "team-4", "team-5", "team-6", "team-7", "team-8", "team-9"}

// populateConcurrency is how many creators fill a configuration's data.
const populateConcurrency = 64

// startups fills each configuration's etcd prefix with o.Secrets Secrets
// and measures start-ups, taking the configurations in turn in each
// repeat so that the machine's other load weighs on all alike.
func (r *bench) startups(ctx context.Context) error {
	data := []startData{
		{"/startup-identity", []string{provIdentity}},
		{"/startup-kmsv1", []string{provV1On, provV1Off}},
		{"/startup-kmsv2", []string{provV2}},
	}
	for _, d := range data {
		var err error
		if d.providers[0] == provV2 {
			err = r.populateV2(ctx, d.prefix)
		} else {
			err = r.populate(ctx, r.provider(d.providers[0]), d.prefix, 0, r.o.Secrets)
		}
		if err != nil {
			return err
		}
	}
	var err error
	if r.res.DEKs, err = r.countDEKs(); err != nil {
		return err
	}
	r.say("KMS v2 data: %d objects under %d distinct encrypted DEK seeds and %d key_ids", r.res.DEKs.objects, r.res.DEKs.deks, r.res.DEKs.keyIDs)
	byName := map[string]*startup{}
	for rep := range r.o.Repeats {
		for _, d := range data {
			for _, name := range d.providers {
				run, err := r.measureStart(ctx, r.provider(name), d.prefix)
				if err != nil {
					return err
				}
				s := byName[name]
				if s == nil {
					s = &startup{provider: name}
					byName[name] = s
					r.res.Startups = append(r.res.Startups, s)
				}
				s.runs = append(s.runs, run)
				r.say("start-up %d/%d, %s: ready %s, LIST of %d after %s (watch cache init %s)", rep+1, r.o.Repeats,
					name, fmtDur(run.ready), r.o.Secrets, fmtDur(run.total), fmtDur(run.cacheInit))
			}
		}
	}
	return nil
}

// populate (re)starts the apiserver with p on prefix and creates Secrets
// from..from+n.
func (r *bench) populate(ctx context.Context, p provider, prefix string, from, n int) error {
	if r.current != p.name+" "+prefix {
		if _, err := r.restart(ctx, p, prefix); err != nil {
			return err
		}
	}
	if from == 0 {
		r.say("%s: storing %d Secrets under %s", p.name, r.o.Secrets, prefix)
		if err := r.pool.ensureNamespaces(ctx, namespaces...); err != nil {
			return err
		}
	}
	if err := r.pool.populate(ctx, namespaces, "s", from, n, populateConcurrency); err != nil {
		return fmt.Errorf("store Secrets with %s: %w", p.name, err)
	}
	return nil
}

// populateV2 writes the KMS v2 data in o.Slices slices, each under a DEK
// of its own: kube-apiserver makes a DEK seed when it starts and when the
// plugin's key_id changes (which it learns from Status about once a
// minute), so between slices the Vault key is rotated, the plugin's
// key_id awaited, and the apiserver restarted.
func (r *bench) populateV2(ctx context.Context, prefix string) error {
	p, pl := r.provider(provV2), r.plugins[provV2]
	per := r.o.Secrets / r.o.Slices
	for slice := range r.o.Slices {
		from, n := slice*per, per
		if slice == r.o.Slices-1 {
			n = r.o.Secrets - from
		}
		if slice > 0 {
			was, err := pl.keyID(ctx)
			if err != nil {
				return err
			}
			r.b.Vault.Rotate("transit", keyName)
			if _, err := procs.WaitFor(ctx, 30*time.Second, 100*time.Millisecond, "the plugin's key_id after a rotation", func() error {
				now, err := pl.keyID(ctx)
				if err == nil && now == was {
					err = fmt.Errorf("still %q", was)
				}
				return err
			}); err != nil {
				return err
			}
			if _, err := r.restart(ctx, p, prefix); err != nil {
				return err
			}
		}
		if err := r.populate(ctx, p, prefix, from, n); err != nil {
			return err
		}
	}
	return nil
}

// countDEKs reads the KMS v2 data from etcd and counts its distinct
// encrypted DEK seeds and key_ids.
func (r *bench) countDEKs() (dekCount, error) {
	var c dekCount
	deks, keyIDs := map[string]bool{}, map[string]bool{}
	header := []byte("k8s:enc:kms:v2:vault:")
	for _, ns := range namespaces {
		for _, kv := range r.b.EtcdSecrets(r.h, "/startup-kmsv2/secrets/"+ns+"/") {
			raw, ok := bytes.CutPrefix(kv.Value, header)
			if !ok {
				return c, fmt.Errorf("etcd value %s is not KMS v2 data of provider vault", kv.Key)
			}
			var obj kmstypes.EncryptedObject
			if err := proto.Unmarshal(raw, &obj); err != nil {
				return c, fmt.Errorf("etcd value %s: %w", kv.Key, err)
			}
			c.objects++
			deks[string(obj.EncryptedDEKSource)] = true
			keyIDs[obj.KeyID] = true
		}
	}
	c.deks, c.keyIDs = len(deks), len(keyIDs)
	if c.objects != r.o.Secrets {
		return c, fmt.Errorf("etcd holds %d KMS v2 Secrets under /startup-kmsv2, want %d", c.objects, r.o.Secrets)
	}
	return c, nil
}

// measureStart restarts the apiserver with p on prefix and times it from
// the process's start until a LIST of all Secrets (all namespaces, no
// resourceVersion: a consistent read) returns every one.
func (r *bench) measureStart(ctx context.Context, p provider, prefix string) (startRun, error) {
	var run startRun
	pl := r.plugins[p.name]
	r.b.StopAPIServer()
	var pluginBefore metrics
	var pluginCPU time.Duration
	if pl != nil {
		var err error
		if pluginBefore, err = pl.metrics(); err != nil {
			return run, err
		}
		pluginCPU = cpuTime(pl.proc.PID())
	}
	vaultCPU := cpuTime(r.b.Vault.PID())
	ready, err := r.restart(ctx, p, prefix)
	if err != nil {
		return run, err
	}
	afterReady := time.Now()
	if err := r.listAll(ctx); err != nil {
		return run, fmt.Errorf("%s start-up: %w", p.name, err)
	}
	run.ready, run.total = ready, ready+time.Since(afterReady)
	run.apiCPU = cpuTime(r.b.APIServer.PID())
	run.vaultCPU = cpuTime(r.b.Vault.PID()) - vaultCPU
	api, err := parseMetrics(r.b.APIGet("/metrics"))
	if err != nil {
		return run, err
	}
	run.cacheInit = api.get("apiserver_watch_cache_initialization_duration_seconds", map[string]string{"resource": "secrets"}).mean()
	run.decrypts = api.get("apiserver_storage_transformation_duration_seconds", map[string]string{"transformation_type": "from_storage"})
	run.kms = api.get("apiserver_envelope_encryption_kms_operations_latency_seconds", nil)
	if pl != nil {
		after, err := pl.metrics()
		if err != nil {
			return run, err
		}
		run.pluginCalls = delta(pluginBefore, after, "vault_kms_plugin_grpc_requests_total", nil).sum
		run.vaultReqs = delta(pluginBefore, after, "vault_kms_plugin_vault_requests_total", nil).sum
		run.pluginCPU = cpuTime(pl.proc.PID()) - pluginCPU
	}
	return run, nil
}

// listAll LISTs Secrets until the answer holds all o.Secrets. Until the
// watch cache of Secrets is filled, kube-apiserver answers such a LIST
// with 429 and Retry-After; the LIST is polled without client-go's own
// retries, which would wait the Retry-After's whole seconds.
func (r *bench) listAll(ctx context.Context) error {
	rc := r.pool.clients[0].CoreV1().RESTClient()
	var last error
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var list corev1.SecretList
		last = rc.Get().Resource("secrets").MaxRetries(0).Do(ctx).Into(&list)
		if last == nil {
			if len(list.Items) == r.o.Secrets {
				return nil
			}
			return fmt.Errorf("LIST of Secrets returned %d, want %d", len(list.Items), r.o.Secrets)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("LIST of all %d Secrets did not succeed within 5m: %v", r.o.Secrets, last)
}
