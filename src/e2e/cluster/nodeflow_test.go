package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// The chart's defaults, as a user who gives only the seed's four keys gets
// them: the socket on the node, the health port on the node's loopback.
const (
	nodeSocket     = "/var/run/kmsplugin/socket.sock"
	nodeHealthAddr = "127.0.0.1:8787"
)

// seedValues is the seed's vault-values.yaml, its four keys verbatim (the
// values are this test bed's Vault), and the one line the test adds: the
// imported image must never be pulled.
const seedValues = `keyNames:
%s
transitPath: /transit
ca-cert: %s
addr: %s
image:
  pullPolicy: Never
`

// TestNode is `helm install -f vault-values.yaml` on a real node: the
// kubelet runs the chart's pods on containerd, with Helm 3 and then Helm 4,
// and then the static pod boots the plugin before the apiserver. make
// e2e-node runs it; docs/testing.md lists what each stage asserts.
func TestNode(t *testing.T) {
	began := time.Now()
	b := newTestBed(t, "/")
	var timings []string
	t.Cleanup(func() {
		t.Logf("stage timings:\n  %s\n  total %.1fs", strings.Join(timings, "\n  "), time.Since(began).Seconds())
		b.collectLogs(t)
	})
	stage := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, f)
		timings = append(timings, fmt.Sprintf("%-58s %6.1fs", name, time.Since(start).Seconds()))
		if !ok {
			// What the cluster saw, for the logs kept of a failed run.
			for _, what := range [][]string{{"get", "events", "-A", "-o", "wide"}, {"get", "pods", "-A", "-o", "yaml"}} {
				out, _ := b.Kubectl(what...)
				bed.WriteFile(t, filepath.Join(b.LogDir, what[1]+".txt"), out)
			}
			t.FailNow()
		}
	}

	n := newNode(t, b)
	var images nodeImages
	var nodeFlags []string
	// Vault with its own certificate from the test's CA; the CA file is
	// where the values file's ca-cert says. It lives as long as the test.
	vcert, vkey := b.PKI.Issue(t, "vault", bed.ServingTemplate("vault", "localhost"))
	b.Vault = testvault.Start(t, testvault.Options{ServingCert: &testvault.ServingCert{CertFile: vcert, KeyFile: vkey, CAFile: b.PKI.CAFile}})
	b.Vault.EnableTransit("transit", oldKey)

	stage("0_images_and_control_plane", func(t *testing.T) {
		images = buildNodeImages(t, n)
		b.PluginBin = images.pluginBin
		b.StartEtcd(t)
		nodeFlags = b.apiserverNodeFlags(t)
		// The apiserver first: the kubelet's CSINode set-up gives up after
		// about 140 s without one.
		b.StartAPIServer(t, "", nodeFlags...)
		n.startControllers(t)
		n.startContainerd(t)
		n.importImage(t, images.pause, pauseImage)
		n.importImage(t, images.plugin, images.pluginRef)
		n.startKubelet(t)
		t.Logf("node Ready after %s", n.waitReady(t, 120*time.Second).Round(100*time.Millisecond))
		b.prepareVaultForNode(t)
		_, err := b.Client.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}, metav1.CreateOptions{})
		must(t, err)
	})

	encrypted := false
	keys := []string{oldKey}
	for _, helm := range []string{"helm3", "helm4"} {
		h := &helmCLI{b: b, bin: bed.Bin(t, helm), name: helm}
		next := fmt.Sprintf("kube-secrets-%s", helm)
		stage(helm+"_install_rollout_and_helm_test", func(t *testing.T) {
			t.Logf("%s", h.run(t, "version"))
			values := b.nodeValues(t, helm+"-values.yaml", keys)
			start := time.Now()
			h.run(t, "install", releaseName, filepath.Join(bed.RepoRoot(t), "charts", "vault-kms-plugin"), "-n", releaseNS, "-f", values)
			b.rolloutStatus(t)
			t.Logf("installed and rolled out in %s", time.Since(start).Round(100*time.Millisecond))
			pod := b.pluginPod(t)
			if !podReady(pod) {
				t.Fatalf("pod %s is not Ready after the rollout", pod.Name)
			}
			checkSocketMode(t, nodeSocket, 0o600)
			// The pod is Ready on /livez, which asks nothing of Vault (so
			// that a rollout during a Vault outage goes one pod at a time);
			// the plugin's own /readyz passes only after a login with the
			// token the kubelet projected, and its metrics say so.
			bed.WaitFor(t, 60*time.Second, "the plugin's /readyz", func() error {
				if code, body, err := bed.HTTPGet("http://" + nodeHealthAddr + "/readyz"); err != nil || code != 200 {
					return fmt.Errorf("%d %v %s", code, err, strings.TrimSpace(body))
				}
				return nil
			})
			m := scrape(t, func() (int, string, error) { return bed.HTTPGet("http://" + nodeHealthAddr + "/metrics") })
			if m.sum("vault_kms_plugin_vault_logins_total", map[string]string{"outcome": "ok"}) < 1 {
				t.Fatal("the plugin is Ready but counts no successful Vault login")
			}
			h.run(t, "test", releaseName, "-n", releaseNS, "--timeout", "3m")
		})

		stage(helm+"_apiserver_encrypts_through_the_socket", func(t *testing.T) {
			if !encrypted {
				cfg := bed.WriteFile(t, filepath.Join(b.LogDir, "encryption-config.yaml"), readmeEncryptionConfig(t))
				if !strings.Contains(readmeEncryptionConfig(t), "unix://"+nodeSocket) {
					t.Fatalf("the README's EncryptionConfiguration does not name %s", nodeSocket)
				}
				b.StopAPIServer()
				b.StartAPIServer(t, cfg, nodeFlags...)
				encrypted = true
			}
			bed.WaitFor(t, 90*time.Second, "/readyz/kms-providers", func() error {
				if code, body, err := b.APIGet("/readyz/kms-providers"); err != nil || code != 200 {
					return fmt.Errorf("%d %v %s", code, err, body)
				}
				return nil
			})
			name := b.uniqueName(helm + "-encrypted")
			b.createSecret(t, name)
			raw := b.EtcdGet(t, testNS, name)
			b.checkStoredV2(t, name, raw, keys[0]+"/", keys[0]+":vault:v")
			b.checkSecretsRead(t)
		})

		stage(helm+"_container_killed_then_pod_deleted", func(t *testing.T) {
			pod := b.pluginPod(t)
			restarts := pod.Status.ContainerStatuses[0].RestartCount
			id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
			if _, err := n.ctr(t, "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
				t.Fatal(err)
			}
			d := bed.WaitFor(t, 90*time.Second, "the killed container restarted and Ready", func() error {
				p, err := b.findPluginPod(t)
				if err != nil {
					return err
				}
				if p.Status.ContainerStatuses[0].RestartCount <= restarts || !podReady(p) {
					return fmt.Errorf("restarts %d, ready %v", p.Status.ContainerStatuses[0].RestartCount, podReady(p))
				}
				return nil
			})
			t.Logf("container back and Ready %s after SIGKILL, over the leftover socket", d.Round(100*time.Millisecond))
			b.waitStatusCall(t)
			b.createSecret(t, b.uniqueName(helm+"-after-kill"))
			b.checkNothingLost(t)

			must(t, b.Client.CoreV1().Pods(releaseNS).Delete(ctx(t), pod.Name, metav1.DeleteOptions{}))
			d = bed.WaitFor(t, 120*time.Second, "a new plugin pod Ready", func() error {
				p, err := b.findPluginPod(t)
				if err != nil {
					return err
				}
				if p.Name == pod.Name || !podReady(p) {
					return fmt.Errorf("pod %s ready %v", p.Name, podReady(p))
				}
				return nil
			})
			t.Logf("a new pod Ready %s after the delete", d.Round(100*time.Millisecond))
			b.waitStatusCall(t)
			b.createSecret(t, b.uniqueName(helm+"-after-delete"))
			b.checkNothingLost(t)
		})

		stage(helm+"_upgrade_to_a_new_key", func(t *testing.T) {
			b.Vault.Write("transit/keys/"+next, nil)
			keys = append([]string{next}, keys...)
			b.Vault.Policy(vaultRole, testvault.KMSPolicy("transit", keys...))
			b.Vault.Policy("static-pod", testvault.KMSPolicy("transit", keys...))
			before := b.pluginPod(t)
			values := b.nodeValues(t, helm+"-upgrade-values.yaml", keys)
			gap := watchSocket(nodeSocket)
			h.run(t, "upgrade", releaseName, filepath.Join(bed.RepoRoot(t), "charts", "vault-kms-plugin"), "-n", releaseNS, "-f", values)
			b.rolloutStatus(t)
			after := b.pluginPod(t)
			if after.Name == before.Name || after.Annotations["checksum/config"] == before.Annotations["checksum/config"] {
				t.Fatalf("helm upgrade with new keyNames did not roll the pod (checksum/config %q)", after.Annotations["checksum/config"])
			}
			longest := gap()
			t.Logf("the roll left the socket without a server for %s at the longest", longest.Round(time.Millisecond))
			b.checkSecretsRead(t)
			// The apiserver takes the new key once its Status sees the new
			// key_id (every minute while healthy).
			d := bed.WaitFor(t, 150*time.Second, "a new Secret under "+next, func() error {
				name := b.uniqueName(helm + "-new-key")
				if err := b.tryCreateSecret(t, name); err != nil {
					return err
				}
				if raw := b.EtcdGet(t, testNS, name); !strings.Contains(string(raw), next+":vault:v1:") {
					return fmt.Errorf("%s is not under %s yet", name, next)
				}
				return nil
			})
			t.Logf("new Secrets under %s %s after the upgrade", next, d.Round(time.Second))
			b.checkNothingLost(t)
		})

		stage(helm+"_uninstall", func(t *testing.T) {
			h.run(t, "uninstall", releaseName, "-n", releaseNS, "--wait", "--timeout", "2m")
			bed.WaitFor(t, 60*time.Second, "the socket removed by the pod's SIGTERM", func() error {
				if _, err := os.Lstat(nodeSocket); err == nil {
					return fmt.Errorf("%s still exists", nodeSocket)
				}
				return nil
			})
			b.checkUninstalled(t)
		})
	}

	stage("static_pod_cold_boot", func(t *testing.T) {
		// Every process but etcd and Vault stops; the node's pods go with
		// the kubelet's containers, as in a power cut.
		b.StopAPIServer()
		n.stopKubelet()
		must(t, n.removeAllPods(t))
		manifest := b.staticPodManifest(t, keys)
		bed.WriteFile(t, filepath.Join(n.manifests, "vault-kms-plugin.yaml"), manifest)
		start := time.Now()
		n.startKubelet(t)
		d := bed.WaitFor(t, 90*time.Second, "the static pod's plugin ready, with no apiserver", func() error {
			code, body, err := bed.HTTPGet("http://" + nodeHealthAddr + "/readyz")
			if err != nil || code != 200 {
				return fmt.Errorf("%d %v %s", code, err, body)
			}
			return nil
		})
		checkSocketMode(t, nodeSocket, 0o600)
		t.Logf("the kubelet started the static pod and it was ready %s later, before any apiserver", d.Round(100*time.Millisecond))
		cfg := filepath.Join(b.LogDir, "encryption-config.yaml")
		t.Logf("the apiserver with the EncryptionConfiguration ready in %s", b.StartAPIServer(t, cfg, nodeFlags...).Round(100*time.Millisecond))
		if code, body, _ := b.APIGet("/readyz/kms-providers"); code != 200 {
			t.Fatalf("/readyz/kms-providers: %d %s", code, body)
		}
		b.checkNothingLost(t)
		name := b.uniqueName("static-pod")
		b.createSecret(t, name)
		b.checkStoredV2(t, name, b.EtcdGet(t, testNS, name), keys[0]+"/", keys[0]+":vault:v")
		bed.WaitFor(t, 60*time.Second, "the mirror pod", func() error {
			_, err := b.Client.CoreV1().Pods("kube-system").Get(ctx(t), "vault-kms-plugin-"+nodeName, metav1.GetOptions{})
			return err
		})
		t.Logf("cold boot to an encrypted Secret: %s", time.Since(start).Round(100*time.Millisecond))
		must(t, os.Remove(filepath.Join(n.manifests, "vault-kms-plugin.yaml")))
	})
}

// nodeImages are the OCI archives the node imports, built from this tree.
type nodeImages struct {
	plugin, pluginRef, pluginBin string
	pause                        string
}

// buildNodeImages builds the plugin's image with the project's own build
// (make image-oci, the Dockerfile's final stage without Docker) and the
// sandbox's pause image.
func buildNodeImages(t testing.TB, n *node) nodeImages {
	t.Helper()
	root := bed.RepoRoot(t)
	out := filepath.Join(n.dir, "images")
	cmd := exec.Command("make", "-C", root, "image-oci", "OCI_DIR="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image-oci: %v\n%s", err, b)
	}
	version, err := os.ReadFile(filepath.Join(root, "VERSION"))
	must(t, err)
	arch := strings.TrimSpace(goEnv(t, "GOARCH"))
	img := nodeImages{
		plugin:    filepath.Join(out, "vault-kms-plugin-"+arch+".oci.tar"),
		pluginRef: "ghcr.io/vault-kms-plugin/vault-kms-plugin:" + strings.TrimSpace(string(version)),
		pluginBin: filepath.Join(out, "vault-kms-plugin-linux-"+arch),
		pause:     filepath.Join(out, "pause.oci.tar"),
	}
	pause := goBuild(t, filepath.Join(root, "src", "testbed", "node"), "./pause", filepath.Join(out, "pause"))
	oci := exec.Command("go", "run", ".", "-pause", "-binary", pause, "-ref", pauseImage, "-out", img.pause)
	oci.Dir = filepath.Join(root, "src", "testbed", "ociimage")
	if b, err := oci.CombinedOutput(); err != nil {
		t.Fatalf("build the pause image: %v\n%s", err, b)
	}
	return img
}

func goEnv(t testing.TB, name string) string {
	out, err := exec.Command("go", "env", name).Output()
	must(t, err)
	return string(out)
}

// prepareVaultForNode is the README's "Prepare Vault" for the node:
// Kubernetes auth against the real apiserver, with a reviewer account of
// Vault's own (bound to system:auth-delegator), and the role the chart's
// service account logs in with, audience vault (the chart's default).
func (b *testBed) prepareVaultForNode(t testing.TB) {
	t.Helper()
	c := ctx(t)
	_, err := b.Client.CoreV1().ServiceAccounts("kube-system").Create(c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vault-reviewer"}}, metav1.CreateOptions{})
	must(t, err)
	_, err = b.Client.RbacV1().ClusterRoleBindings().Create(c, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "vault-reviewer", Namespace: "kube-system"}},
	}, metav1.CreateOptions{})
	must(t, err)
	b.Vault.Policy(vaultRole, testvault.KMSPolicy("transit", oldKey))
	b.Vault.Policy("static-pod", testvault.KMSPolicy("transit", oldKey))
	must(t, b.Vault.Client().Sys().EnableAuthWithOptions("kubernetes", &api.EnableAuthOptions{Type: "kubernetes"}))
	b.vaultWrite(t, "auth/kubernetes/config", map[string]any{
		"kubernetes_host":      fmt.Sprintf("https://127.0.0.1:%d", b.APIServerPort),
		"kubernetes_ca_cert":   b.PKI.CAPEM,
		"disable_local_ca_jwt": true,
		"token_reviewer_jwt":   b.tokenFor(t, "kube-system", "vault-reviewer", ""),
	})
	b.vaultWrite(t, "auth/kubernetes/role/"+vaultRole, map[string]any{
		"bound_service_account_names":      roleSA,
		"bound_service_account_namespaces": roleSANS,
		"audience":                         readmeAud,
		"token_policies":                   vaultRole,
		"token_ttl":                        "1h",
	})
}

// nodeValues writes the seed's values file for keys.
func (b *testBed) nodeValues(t testing.TB, name string, keys []string) string {
	t.Helper()
	var list strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&list, "  - %s\n", k)
	}
	return bed.WriteFile(t, filepath.Join(b.LogDir, name), fmt.Sprintf(seedValues, strings.TrimRight(list.String(), "\n"), b.PKI.CAFile, b.Vault.Addr))
}

// staticPodManifest renders the chart's static pod (helm template, as the
// chart README says) with the seed's values and a Vault token file: an auth
// method that needs nothing from the apiserver.
func (b *testBed) staticPodManifest(t testing.TB, keys []string) string {
	t.Helper()
	tokenDir := filepath.Join(b.Dir, "vault-token")
	must(t, os.MkdirAll(tokenDir, 0o700))
	token := b.Vault.Token(&api.TokenCreateRequest{Policies: []string{"static-pod"}, TTL: "2h", NoParent: true})
	tokenFile := bed.WriteFile(t, filepath.Join(tokenDir, "token"), token)
	values := b.nodeValues(t, "static-pod-values.yaml", keys)
	h := &helmCLI{b: b, bin: bed.Bin(t, "helm4"), name: "helm4"}
	return h.run(t, "template", releaseName, filepath.Join(bed.RepoRoot(t), "charts", "vault-kms-plugin"), "-f", values,
		"--set", "staticPod.enabled=true", "--set", "auth.method=token", "--set", "auth.token.tokenFile="+tokenFile)
}

// helmCLI is the real helm command, Helm 3 or Helm 4, on the bed's
// kubeconfig, with its caches and config under the test's directory.
type helmCLI struct {
	b    *testBed
	bin  string
	name string
}

func (h *helmCLI) run(t testing.TB, args ...string) string {
	t.Helper()
	home := filepath.Join(h.b.Dir, h.name+"-home")
	cmd := exec.Command(h.bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+h.b.Kubeconfig, "HELM_CACHE_HOME="+home+"/cache",
		"HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	out, err := cmd.CombinedOutput()
	f, ferr := os.OpenFile(filepath.Join(h.b.LogDir, "helm.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if ferr == nil {
		fmt.Fprintf(f, "===== %s: %s %q: err=%v\n%s\n", time.Now().Format(time.RFC3339Nano), h.name, args, err, out)
		f.Close()
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", h.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rolloutStatus is `kubectl rollout status ds/vault-kms-plugin`, once the
// DaemonSet controller has counted the node (until then a DaemonSet of no
// pods counts as rolled out).
func (b *testBed) rolloutStatus(t testing.TB) {
	t.Helper()
	bed.WaitFor(t, 60*time.Second, "the DaemonSet scheduled on the node", func() error {
		ds, err := b.Client.AppsV1().DaemonSets(releaseNS).Get(ctx(t), releaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ds.Status.DesiredNumberScheduled != 1 {
			return fmt.Errorf("desiredNumberScheduled %d", ds.Status.DesiredNumberScheduled)
		}
		return nil
	})
	if out, err := b.Kubectl("rollout", "status", "ds/"+releaseName, "-n", releaseNS, "--timeout=180s"); err != nil {
		t.Fatalf("kubectl rollout status: %v\n%s", err, out)
	}
}

// pluginPod is the DaemonSet's one pod (not the helm test pod).
func (b *testBed) pluginPod(t testing.TB) *corev1.Pod {
	t.Helper()
	p, err := b.findPluginPod(t)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// findPluginPod is pluginPod for a wait: no pod, or more than one, is an
// error to retry on (a deleted pod's successor takes a moment to appear).
func (b *testBed) findPluginPod(t testing.TB) (*corev1.Pod, error) {
	t.Helper()
	list, err := b.Client.CoreV1().Pods(releaseNS).List(ctx(t), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + releaseName + ",app.kubernetes.io/component!=test",
	})
	if err != nil {
		return nil, err
	}
	var live []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != 1 || len(live[0].Status.ContainerStatuses) != 1 {
		return nil, fmt.Errorf("want one plugin pod with one container status, got %d pods", len(live))
	}
	return &live[0], nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitStatusCall waits for the apiserver's Status call to reach the plugin
// that now serves the socket (a new process: its counters start at zero).
func (b *testBed) waitStatusCall(t testing.TB) {
	t.Helper()
	d := bed.WaitFor(t, 150*time.Second, "the apiserver's Status reaching the new plugin", func() error {
		code, body, err := bed.HTTPGet("http://" + nodeHealthAddr + "/metrics")
		if err != nil || code != 200 {
			return fmt.Errorf("%d %v", code, err)
		}
		if !strings.Contains(body, `method="Status"`) {
			return fmt.Errorf("no Status call yet")
		}
		return nil
	})
	t.Logf("the apiserver's Status reached the new plugin %s later", d.Round(time.Second))
}

// checkSocketMode checks that path is a socket with mode perm.
func checkSocketMode(t testing.TB, path string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != perm {
		t.Fatalf("%s: %v (mode %v), want a socket with mode %v", path, err, fi.Mode(), perm)
	}
}

// watchSocket connects to the socket every 20 ms until the returned
// function is called, which returns the longest time no server accepted.
func watchSocket(path string) func() time.Duration {
	done := make(chan struct{})
	result := make(chan time.Duration, 1)
	go func() {
		var longest time.Duration
		var downSince time.Time
		for {
			select {
			case <-done:
				if !downSince.IsZero() {
					longest = max(longest, time.Since(downSince))
				}
				result <- longest
				return
			case <-time.After(20 * time.Millisecond):
			}
			c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
			switch {
			case err != nil && downSince.IsZero():
				downSince = time.Now()
			case err == nil:
				c.Close()
				if !downSince.IsZero() {
					longest = max(longest, time.Since(downSince))
					downSince = time.Time{}
				}
			}
		}
	}()
	return func() time.Duration { close(done); return <-result }
}

// checkUninstalled checks that helm uninstall removed what the install made.
func (b *testBed) checkUninstalled(t testing.TB) {
	t.Helper()
	c := ctx(t)
	gone := func(what string, err error) {
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s after helm uninstall: %v, want NotFound", what, err)
		}
	}
	_, err := b.Client.AppsV1().DaemonSets(releaseNS).Get(c, releaseName, metav1.GetOptions{})
	gone("DaemonSet", err)
	_, err = b.Client.CoreV1().ServiceAccounts(releaseNS).Get(c, releaseName, metav1.GetOptions{})
	gone("ServiceAccount", err)
	_, err = b.Client.CoreV1().ConfigMaps(releaseNS).Get(c, releaseName, metav1.GetOptions{})
	gone("ConfigMap", err)
	_, err = b.Client.RbacV1().ClusterRoleBindings().Get(c, releaseName+"-auth-delegator", metav1.GetOptions{})
	gone("ClusterRoleBinding", err)
	bed.WaitFor(t, 60*time.Second, "the plugin's pods gone", func() error {
		list, err := b.Client.CoreV1().Pods(releaseNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + releaseName})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d pods left", len(list.Items))
		}
		return nil
	})
}
