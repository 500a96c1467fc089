package apiserver

import (
	"fmt"
	"io"
	"time"
)

// whereTimeGoes writes, for each target missed, what the run's own
// evidence says about it, and what kube-apiserver's code does at
// start-up.
func (r *Result) whereTimeGoes(w io.Writer) {
	fmt.Fprintf(w, "### Where the time goes\n\n")
	top := r.Options.Levels[len(r.Options.Levels)-1]
	id := r.Costs[provIdentity]
	// Targets' order: v2 creates, v1 creates, v1 start-up, v2 start-up.
	for i, t := range r.Targets() {
		if t.Met || !t.Measured {
			continue
		}
		fmt.Fprintf(w, "- %s, missed:", t.Goal)
		switch i {
		case 0, 1:
			c := r.Costs[map[int]string{0: provV2, 1: provV1On}[i]]
			if c == nil || id == nil {
				break
			}
			fmt.Fprintf(w, " at c=%d a create took %s in the apiserver (mean) against %s with identity; of that, encryption %s "+
				"(%s plugin calls per create, %s each as the plugin measures them) and the etcd write %s (identity %s). "+
				"Besides, the apiserver decrypts each new Secret again when its own watch reads it back into the watch cache: "+
				"%s decryptions per create at %s each. "+
				"CPU per create: apiserver %s (identity %s), plugin %s, Vault %s, etcd %s (identity %s), load generator %s (identity %s). "+
				"Every process here shares the same 2 cores with each other and with other work on the machine, so CPU spent per create "+
				"is what caps creates per second.",
				top, fmtDur(c.post.mean()), fmtDur(id.post.mean()), fmtDur(c.toStorage.mean()), perCall(c.pluginCalls, float64(c.creates)),
				fmtDur(c.pluginLat.mean()), fmtDur(c.etcdCreate.mean()), fmtDur(id.etcdCreate.mean()),
				perCall(c.fromStorage.count, float64(c.creates)), fmtDur(c.fromStorage.mean()),
				perCreate(c, "kube-apiserver"), perCreate(id, "kube-apiserver"), perCreate(c, "plugin"), perCreate(c, "Vault"),
				perCreate(c, "etcd"), perCreate(id, "etcd"), perCreate(c, "load generator"), perCreate(id, "load generator"))
			if local, self := r.point(provLocal, top), r.point(map[int]string{0: provV2, 1: provV1On}[i], top); local != nil && self != nil && local.rate() > 0 {
				fmt.Fprintf(w, " The same run's local key (secretbox, no plugin, no Vault) made %.0f creates/s: %.2f× identity, and this "+
					"configuration %.2f× the local key. The load generator does the same work for every create whatever the "+
					"configuration, so its CPU per create against identity's (%s vs %s) shows how much busier the machine was "+
					"during this configuration's windows.", local.rate(), local.rate()/r.point(provIdentity, top).rate(),
					self.rate()/local.rate(), perCreate(c, "load generator"), perCreate(id, "load generator"))
			}
		case 2:
			on, off := r.startup(provV1On).median(), r.startup(provV1Off).median()
			fmt.Fprintf(w, " the watch cache's fill took %s with group commit on and %s off (%.2f×), but the whole start-up also holds "+
				"%s of apiserver start that no plugin changes (identity's /readyz minus its fill). The fill made %.0f decrypts, their summed "+
				"time %.1f× its wall time, so about that many at once; the plugin answered %.0f calls with %.0f Vault requests "+
				"(%s calls per request) with group commit on, against %.0f with %.0f off; Vault used %s of CPU on, %s off, the plugin %s on, %s off. "+
				"kube-apiserver keeps at most 10 decrypts in flight while it fills the cache (below), so no batch can hold more "+
				"than 10, and each call waits for its batch's round trip: the fill runs at about 10 ÷ (one batch's latency).",
				fmtDur(on.cacheInit), fmtDur(off.cacheInit), off.cacheInit.Seconds()/max(1e-9, on.cacheInit.Seconds()),
				fmtDur(r.fixedStart()), on.decrypts.count, on.decrypts.sum/max(1e-9, on.cacheInit.Seconds()),
				on.pluginCalls, on.vaultReqs, perCall(on.pluginCalls, on.vaultReqs), off.pluginCalls, off.vaultReqs,
				fmtDur(on.vaultCPU), fmtDur(off.vaultCPU), fmtDur(on.pluginCPU), fmtDur(off.pluginCPU))
		case 3:
			v2, ident := r.startup(provV2).median(), r.startup(provIdentity).median()
			fmt.Fprintf(w, " KMS v2 reached /readyz in %s against %s and filled its watch cache in %s against %s, "+
				"with %.0f KMS calls (%s each, as the apiserver measures them) and %.0f from-storage transformations at %s each.",
				fmtDur(v2.ready), fmtDur(ident.ready), fmtDur(v2.cacheInit), fmtDur(ident.cacheInit),
				v2.kms.count, fmtDur(v2.kms.mean()), v2.decrypts.count, fmtDur(v2.decrypts.mean()))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "\nWhat kube-apiserver v1.37 does at start-up (read in k8s.io/apiserver v0.37.2 and kubernetes v1.37.2): "+
		"`/readyz` waits for the watch caches to be filled (`pkg/server/storage_readiness_hook.go`, on by the "+
		"WatchCacheInitializationPostStartHook gate, GA and locked on in 1.37), so the time to /readyz includes the decrypts of every "+
		"stored Secret. The watch cache of Secrets is filled by its reflector as a watch-list (client-go's WatchListClient, on by "+
		"default since 1.35): `storage/cacher/lister_watcher.go`'s `Watch` with SendInitialEvents, which the etcd3 watcher "+
		"(`storage/etcd3/watcher.go`, `sync`) answers by reading the prefix and turning each key into an event. With "+
		"ConcurrentWatchObjectDecode (on by default in 1.37) those events are decrypted and decoded by up to 10 goroutines at once "+
		"(`processEventConcurrency = 10`, `concurrentProcessEvents`), in order. So the KMS v1 transformer "+
		"(`storage/value/encrypt/envelope/envelope.go`), which misses its DEK cache on every object (v1 makes a DEK per write) and "+
		"calls the plugin's Decrypt, has up to 10 calls in flight: group commit can batch those, and no more. A plain LIST from etcd is "+
		"still serial (`storage/etcd3/store.go`: `appendChunk` → `processListItem` → `TransformFromStorage`, one key after the other); "+
		"it serves LISTs with a limit while the cache fills (`storage/cacher/delegator.go`) and the fallback when a watch-list fails. "+
		"KMS v2 (`storage/value/encrypt/envelope/kmsv2/envelope.go`, `cache.go`) decrypts each distinct DEK seed once and derives "+
		"each object's key locally, so its start-up needs one KMS call per DEK seed; but its cache lookup and fill are not "+
		"collapsed into one call per seed, so the up to 10 goroutines that miss the same seed at once each call Decrypt, "+
		"and the KMS calls counted above run to several per seed (group commit turns those into fewer Vault requests). Per object it still does work identity does not: it unmarshals the "+
		"EncryptedObject, hashes its cache key, expands a key from the seed and the object's random info with HKDF-SHA256 "+
		"(`storage/value/encrypt/aes/aes_extended_nonce.go`) and opens AES-GCM; the decrypt mean above is what that took per "+
		"object in this run (wall time, CPU shared with everything else on the machine). A write does the same in reverse, "+
		"with no plugin call: a fresh key expanded from the seed with random info, then AES-GCM; and the apiserver's watch "+
		"decrypts each new object once more for the watch cache. That per-object work, not the plugin, is what KMS v2 "+
		"adds to a create.\n\n")
}

// fixedStart is the part of a start-up no encryption changes: identity's
// time to /readyz less its watch cache's fill.
func (r *Result) fixedStart() time.Duration {
	s := r.startup(provIdentity)
	if s == nil {
		return 0
	}
	m := s.median()
	return m.ready - m.cacheInit
}

func perCreate(c *cost, proc string) string {
	if c == nil || c.creates == 0 {
		return "—"
	}
	if _, ok := c.cpu[proc]; !ok {
		return "—"
	}
	return fmtDur(c.cpu[proc] / time.Duration(c.creates))
}
