package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/bed"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/testvault"
)

// node is a real Kubernetes node on this machine: containerd (Debian's,
// with runc) and the kubelet, with kube-scheduler and
// kube-controller-manager beside the bed's apiserver. Everything it keeps is
// under dir; what containerd, the kubelet and CNI write elsewhere, host
// records and the teardown removes.
type node struct {
	b   *testBed
	dir string

	containerdSock string
	containerd     *procs.Process
	kubelet        *procs.Process
	scheduler, kcm *procs.Process

	kubeletArgs []string
	manifests   string // the kubelet's staticPodPath
	podLogs     string

	host *hostState
}

// nodeName is the node's name: the kubelet refuses a loopback node IP, so
// it registers as localhost and the apiserver reaches it by that name.
const nodeName = "localhost"

// pauseImage is the sandbox image containerd runs for every pod; it is
// built here (src/testbed/node/pause) and imported, never pulled.
const pauseImage = "registry.k8s.io/pause:3.10"

// apiserverNodeFlags are the apiserver flags a cluster with a kubelet needs:
// client certificates (the kubelet's and the controllers'), the kubelet's
// own authorisation and admission, and the kubelet reached by its name.
func (b *testBed) apiserverNodeFlags(t testing.TB) []string {
	t.Helper()
	cert, key := b.PKI.ClientCert(t, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	return []string{
		"--client-ca-file=" + b.PKI.CAFile,
		"--kubelet-client-certificate=" + cert,
		"--kubelet-client-key=" + key,
		"--kubelet-certificate-authority=" + b.PKI.CAFile,
		"--kubelet-preferred-address-types=Hostname",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
	}
}

// certKubeconfig writes a kubeconfig for the apiserver with a client
// certificate of user cn (groups orgs).
func (b *testBed) certKubeconfig(t testing.TB, name, cn string, orgs ...string) string {
	t.Helper()
	cert, key := b.PKI.ClientCert(t, name, cn, orgs...)
	return bed.WriteFile(t, filepath.Join(b.Dir, name+".kubeconfig"),
		b.KubeconfigFor(cn, "client-certificate: "+cert+"\nclient-key: "+key))
}

// newNode prepares the node's directories and records the host's state, so
// that the teardown (registered here, so it runs after everything the node
// starts has been told to stop) can put it back.
func newNode(t *testing.T, b *testBed) *node {
	n := &node{b: b, dir: filepath.Join(b.Dir, "n")}
	n.manifests = filepath.Join(n.dir, "manifests")
	n.podLogs = filepath.Join(b.LogDir, "pods") // kept with the other logs of a failed run
	for _, d := range []string{n.manifests, n.podLogs, filepath.Join(n.dir, "kubelet"), filepath.Join(n.dir, "cni", "bin"), filepath.Join(n.dir, "cni", "net.d"), filepath.Join(n.dir, "sysctl")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.containerdSock = filepath.Join(n.dir, "containerd.sock")
	n.host = snapshotHost(t, n.dir)
	b.top.Cleanup(func() { n.teardown(b.top) })
	return n
}

// --- containerd -------------------------------------------------------------

// startContainerd runs containerd with its own root, state, socket and CNI
// directories under the node's, and the settings this machine needs: no
// CAP_SYS_RESOURCE (restrict_oom_score_adj), cgroupfs (no systemd), the
// locally built pause image.
func (n *node) startContainerd(t testing.TB) {
	t.Helper()
	bin := hostBin(t, "containerd", "apt-get install containerd runc")
	hostBin(t, "runc", "apt-get install runc")
	cniBin := filepath.Join(n.dir, "cni", "bin")
	goBuild(t, filepath.Join(bed.RepoRoot(t), "src", "testbed", "node"), "./cni", filepath.Join(cniBin, "testbed"))
	// containerd's CRI sets up each pod's loopback with the standard plugin.
	lo := "/usr/lib/cni/loopback"
	if _, err := os.Stat(lo); err != nil {
		t.Fatalf("%s is missing: apt-get install containernetworking-plugins", lo)
	}
	if err := os.Symlink(lo, filepath.Join(cniBin, "loopback")); err != nil {
		t.Fatal(err)
	}
	bed.WriteFile(t, filepath.Join(n.dir, "cni", "net.d", "10-testbed.conf"), fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "testbed",
  "type": "testbed",
  "subnet": "169.254.77.0/24",
  "dataDir": %q
}
`, filepath.Join(n.dir, "cni", "state")))
	cfg := bed.WriteFile(t, filepath.Join(n.dir, "containerd.toml"), fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = "%[3]s.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
`, filepath.Join(n.dir, "containerd", "root"), filepath.Join(n.dir, "containerd", "state"), n.containerdSock,
		filepath.Join(n.dir, "containerd", "opt"), pauseImage, cniBin, filepath.Join(n.dir, "cni", "net.d")))
	n.containerd = bed.StartProc(t, "containerd", filepath.Join(n.b.LogDir, "containerd.log"), n.dir, bin, []string{"--config", cfg}, nil)
	bed.WaitFor(t, 30*time.Second, "containerd's socket", func() error {
		if !n.containerd.Running() {
			t.Fatalf("containerd exited: %v\n%s", n.containerd.Err(), procs.Tail(filepath.Join(n.b.LogDir, "containerd.log"), 30))
		}
		_, err := n.ctr(t, "version")
		return err
	})
}

// ctr runs Debian's ctr against this node's containerd, in the namespace
// the CRI uses.
func (n *node) ctr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("ctr", append([]string{"--address", n.containerdSock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// importImage imports an OCI archive: the image then exists under its name
// and a pod that names it with pullPolicy Never or IfNotPresent runs it
// without a pull (no registry is reachable here).
func (n *node) importImage(t testing.TB, archive, ref string) {
	t.Helper()
	if out, err := n.ctr(t, "images", "import", archive); err != nil {
		t.Fatalf("import %s: %v\n%s", archive, err, out)
	}
	out, err := n.ctr(t, "images", "ls", "-q")
	if err != nil || !strings.Contains(out, ref) {
		t.Fatalf("after importing %s containerd lists %q (err %v), want %s", archive, out, err, ref)
	}
}

// cri is a client of containerd's CRI, as the kubelet talks to it.
func (n *node) cri(t testing.TB) (runtimeapi.RuntimeServiceClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+n.containerdSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return runtimeapi.NewRuntimeServiceClient(conn), func() { conn.Close() }
}

// --- kubelet, kube-scheduler, kube-controller-manager -----------------------

// startKubelet starts the kubelet on this node's containerd. It runs in a
// mount namespace of its own, where read-only files hold the kernel
// settings it insists on (so the host's are never written), with its root
// directory an rshared bind mount, so that the volumes it mounts reach
// containerd. Its PATH leaves out the sbin directories: a kubelet that
// finds iptables writes rules.
func (n *node) startKubelet(t testing.TB) {
	t.Helper()
	b := n.b
	bin := bed.Bin(t, "kubelet")
	root := filepath.Join(n.dir, "kubelet")
	if n.kubeletArgs == nil {
		mount(t, "--bind", root, root)
		mount(t, "--make-rshared", root)
		kubeconfig := b.certKubeconfig(t, "kubelet", "system:node:"+nodeName, "system:nodes")
		serving, servingKey := b.PKI.Issue(t, "kubelet-serving", bed.ServingTemplate(nodeName))
		cfg := bed.WriteFile(t, filepath.Join(n.dir, "kubelet.yaml"), fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
fileCheckFrequency: 2s
podLogsDir: %s
# An imported image cannot be pulled again: never collect or evict it.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
serializeImagePulls: false
`, testvault.FreePort(t), testvault.FreePort(t), serving, servingKey, b.PKI.CAFile, n.containerdSock, n.manifests, n.podLogs))
		n.kubeletArgs = []string{"--config=" + cfg, "--kubeconfig=" + kubeconfig, "--hostname-override=" + nodeName,
			"--root-dir=" + root, "--v=2"}
	}
	// The values the kubelet would set (pkg/kubelet/cm's kernel tunables).
	sysctls := map[string]string{"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, k := range sortedKeys(sysctls) {
		f := bed.WriteFile(t, filepath.Join(n.dir, "sysctl", strings.ReplaceAll(k, "/", ".")), sysctls[k]+"\n")
		fmt.Fprintf(&script, "mount --bind -o ro %s /proc/sys/%s\n", f, k)
	}
	script.WriteString(`exec "$0" "$@"` + "\n")
	args := append([]string{"--mount", "--propagation", "unchanged", "--", "/bin/sh", "-c", script.String(), bin}, n.kubeletArgs...)
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + n.dir}
	n.kubelet = bed.StartProc(t, "kubelet", filepath.Join(b.LogDir, "kubelet.log"), n.dir, "/usr/bin/unshare", args, env)
}

// stopKubelet stops the kubelet (SIGTERM) and leaves its pods running, as a
// kubelet restart does.
func (n *node) stopKubelet() {
	if n.kubelet != nil {
		n.kubelet.Stop(syscall.SIGTERM, 30*time.Second)
	}
}

// startControllers starts kube-scheduler and kube-controller-manager, each
// with its own client certificate, as kubeadm runs them; the controller
// manager gives each controller its own service-account credentials.
func (n *node) startControllers(t testing.TB) {
	t.Helper()
	b := n.b
	sched := b.certKubeconfig(t, "kube-scheduler", "system:kube-scheduler")
	n.scheduler = bed.StartProc(t, "kube-scheduler", filepath.Join(b.LogDir, "kube-scheduler.log"), n.dir, bed.Bin(t, "kube-scheduler"), []string{
		"--kubeconfig=" + sched, "--authentication-kubeconfig=" + sched, "--authorization-kubeconfig=" + sched,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", testvault.FreePort(t)), "--leader-elect=false",
	}, nil)
	kcm := b.certKubeconfig(t, "kube-controller-manager", "system:kube-controller-manager")
	n.kcm = bed.StartProc(t, "kube-controller-manager", filepath.Join(b.LogDir, "kube-controller-manager.log"), n.dir, bed.Bin(t, "kube-controller-manager"), []string{
		"--kubeconfig=" + kcm, "--authentication-kubeconfig=" + kcm, "--authorization-kubeconfig=" + kcm,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", testvault.FreePort(t)), "--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + b.PKI.SAKey,
		"--root-ca-file=" + b.PKI.CAFile,
	}, nil)
}

// waitReady waits for the node to register and be Ready, and labels it a
// control-plane node, as kubeadm does (NodeRestriction forbids the kubelet
// that label on itself).
func (n *node) waitReady(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	d := bed.WaitFor(t, timeout, "node "+nodeName+" Ready", func() error {
		if !n.kubelet.Running() {
			t.Fatalf("the kubelet exited: %v\n%s", n.kubelet.Err(), procs.Tail(filepath.Join(n.b.LogDir, "kubelet.log"), 40))
		}
		no, err := n.b.Client.CoreV1().Nodes().Get(ctx(t), nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range no.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("Ready=%s: %s", c.Status, c.Message)
			}
		}
		return fmt.Errorf("no Ready condition yet")
	})
	if out, err := n.b.Kubectl("label", "node", nodeName, "--overwrite", "node-role.kubernetes.io/control-plane="); err != nil {
		t.Fatalf("label the node: %v\n%s", err, out)
	}
	return d
}

// removeAllPods stops and removes every pod sandbox through the CRI, as
// the kubelet would: containers killed, the CNI's DEL run, the network
// namespace removed.
func (n *node) removeAllPods(t testing.TB) error {
	if n.containerd == nil || !n.containerd.Running() {
		return nil
	}
	rs, done := n.cri(t)
	defer done()
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	list, err := rs.ListPodSandbox(c, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("CRI ListPodSandbox: %w", err)
	}
	var errs []string
	for _, sb := range list.Items {
		if _, err := rs.StopPodSandbox(c, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Sprintf("stop sandbox %s: %v", sb.Metadata.GetName(), err))
		}
		if _, err := rs.RemovePodSandbox(c, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Sprintf("remove sandbox %s: %v", sb.Metadata.GetName(), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// teardown stops what the node started and puts the host back as
// snapshotHost found it, then fails the test for anything left.
func (n *node) teardown(t testing.TB) {
	n.stopKubelet()
	for _, p := range []*procs.Process{n.scheduler, n.kcm} {
		if p != nil {
			p.Stop(syscall.SIGTERM, 15*time.Second)
		}
	}
	if err := n.removeAllPods(t); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if n.containerd != nil {
		n.containerd.Stop(syscall.SIGTERM, 20*time.Second)
	}
	for _, problem := range n.host.restore() {
		t.Errorf("teardown: %s", problem)
	}
}

// --- helpers ----------------------------------------------------------------

// hostBin is a program that the machine's packages provide.
func hostBin(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/" + name); serr == nil {
			return "/usr/sbin/" + name
		}
		t.Fatalf("%s is not installed: %s (.ci/run does)", name, install)
	}
	return p
}

// goBuild builds a static binary of package pkg of module dir.
func goBuild(t testing.TB, dir, pkg, out string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s in %s: %v\n%s", pkg, dir, err, b)
	}
	return out
}

func mount(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
