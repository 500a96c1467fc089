package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// pool is several clientsets, each on its own transport and so its own
// TCP connection, as separate controllers would be; worker i uses
// clients[i % len].
type pool struct {
	clients []*kubernetes.Clientset
}

// newPool makes n clientsets from kubeconfig with client-side rate
// limits far above anything the apiserver can serve, speaking protobuf
// as controllers do.
func newPool(kubeconfig string, n int) (*pool, error) {
	p := &pool{}
	for range n {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("read the bench's kubeconfig: %w", err)
		}
		cfg.QPS, cfg.Burst = 1e6, 1e6
		cfg.Timeout = 60 * time.Second
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		// client-go shares one transport among equal configs; a dialer of
		// its own makes the config uncacheable, so each gets its own.
		cfg.Dial = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("make a client: %w", err)
		}
		p.clients = append(p.clients, c)
	}
	return p, nil
}

// payload is the data of every Secret: a few hundred bytes, as a typical
// token or password Secret with its metadata.
var payload = map[string][]byte{
	"username": []byte("bench-user"),
	"password": []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
	"token":    []byte("eyJhbGciOiJSUzI1NiJ9.bench.token.bench.token.bench.token.bench.token.bench.token.bench.token.bench.token.bench.token"),
}

func secret(ns, name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: payload}
}

// ensureNamespaces creates the namespaces, retrying while a just-started
// apiserver's admission is not ready for them.
func (p *pool) ensureNamespaces(ctx context.Context, names ...string) error {
	for _, ns := range names {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := p.clients[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("create namespace %s: %w", ns, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// point is what one configuration served at one concurrency.
type point struct {
	provider string
	c        int
	ok       int
	errs     int
	all      int // creates that succeeded, warm-up included (what the costs divide)
	firstErr error
	window   time.Duration
	lat      []time.Duration // of the creates that succeeded in the window, sorted
}

func (p *point) rate() float64 {
	if p.window <= 0 {
		return 0
	}
	return float64(p.ok) / p.window.Seconds()
}

// pct is the q-quantile of the latencies (0 if none).
func (p *point) pct(q float64) time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	return p.lat[min(len(p.lat)-1, int(q*float64(len(p.lat))))]
}

// merge adds o's window, counts and latencies to p's (sorted later).
func (p *point) merge(o *point) {
	p.ok += o.ok
	p.errs += o.errs
	p.all += o.all
	p.window += o.window
	p.lat = append(p.lat, o.lat...)
	if p.firstErr == nil {
		p.firstErr = o.firstErr
	}
}

// workers runs work on c goroutines, worker w on clientset w % len, and
// waits for them all.
func (p *pool) workers(c int, work func(w int, cs *kubernetes.Clientset)) {
	var wg sync.WaitGroup
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(w, p.clients[w%len(p.clients)])
		}()
	}
	wg.Wait()
}

// measure creates Secrets in ns from c workers for warmup, then for window,
// counting only the creates that start within the window.
func (p *pool) measure(ctx context.Context, prov, ns, tag string, c int, warmup, window time.Duration) *point {
	start := time.Now().Add(warmup)
	end := start.Add(window)
	res := &point{provider: prov, c: c, window: window}
	var mu sync.Mutex
	p.workers(c, func(w int, cs *kubernetes.Clientset) {
		mine := &point{}
		for seq := 0; ctx.Err() == nil; seq++ {
			t0 := time.Now()
			if !t0.Before(end) {
				break
			}
			_, err := cs.CoreV1().Secrets(ns).Create(ctx, secret(ns, fmt.Sprintf("%s-c%d-w%d-%d", tag, c, w, seq)), metav1.CreateOptions{})
			switch {
			case err == nil && t0.Before(start):
				mine.all++
			case err == nil:
				mine.all++
				mine.ok++
				mine.lat = append(mine.lat, time.Since(t0))
			case !t0.Before(start):
				mine.errs++
				if mine.firstErr == nil {
					mine.firstErr = err
				}
			}
		}
		mu.Lock()
		res.merge(mine)
		mu.Unlock()
	})
	slices.Sort(res.lat)
	return res
}

// populate creates n Secrets named tag-i spread over namespaces, from c
// workers; a failed create is retried, so that exactly n exist after.
func (p *pool) populate(ctx context.Context, namespaces []string, tag string, from, n, c int) error {
	var next atomic.Int64
	next.Store(int64(from))
	errc := make(chan error, c)
	p.workers(c, func(_ int, cs *kubernetes.Clientset) {
		for {
			i := int(next.Add(1)) - 1
			if i >= from+n {
				return
			}
			ns := namespaces[i%len(namespaces)]
			if err := createRetrying(ctx, cs, secret(ns, fmt.Sprintf("%s-%d", tag, i))); err != nil {
				errc <- err
				return
			}
		}
	})
	close(errc)
	return <-errc
}

func createRetrying(ctx context.Context, cs *kubernetes.Clientset, s *corev1.Secret) error {
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		_, err = cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(fmt.Errorf("create Secret %s/%s", s.Namespace, s.Name), err)
}
