package cluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostPaths are the places outside the test's directory that containerd,
// runc, the kubelet, CNI and the chart's hostPath write to on this machine,
// whatever their configuration says.
var hostPaths = []string{
	"/run/containerd",           // containerd's shim sockets (/run/containerd/s)
	"/run/netns",                // the pods' network namespaces
	"/var/lib/cni",              // libcni's result cache
	"/var/lib/kubelet",          // device-plugins/kubelet.sock
	"/var/log/containers",       // the kubelet's log symlinks
	"/var/log/pods",             // in case podLogsDir is ignored
	"/var/run/kmsplugin",        // the chart's default socket directory
	"/etc/kubernetes/manifests", // never used: would mean a default path leaked in
	"/opt/containerd",           // containerd's opt plugin default
	"/var/lib/containerd",       // containerd's default root
}

// hostState is what the host looked like before the node started: which
// of hostPaths existed, the mounts, the cgroups and the network links, so
// that restore can remove exactly what the node added.
type hostState struct {
	dir     string // the node's own directory (everything under it is ours)
	existed map[string]bool
	mounts  map[string]bool
	cgroups map[string]bool
	links   map[string]bool
}

func snapshotHost(t testing.TB, dir string) *hostState {
	t.Helper()
	h := &hostState{dir: dir, existed: map[string]bool{}, mounts: mountPoints(), cgroups: cgroupDirs(), links: netLinks()}
	for _, p := range hostPaths {
		_, err := os.Lstat(p)
		h.existed[p] = err == nil
	}
	if h.existed["/var/run/kmsplugin"] {
		t.Fatalf("/var/run/kmsplugin exists on this machine: the node test installs the chart with its default socket directory there and would take it over; remove it or run the test elsewhere")
	}
	return h
}

// restore removes what was added since the snapshot: the processes left
// behind (containerd's shims), mounts (deepest first), network links,
// cgroups and paths. It returns what it could not remove, or found left.
func (h *hostState) restore() []string {
	var problems []string
	if pids := h.shims(); len(pids) > 0 {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, m := range h.newMounts() {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			problems = append(problems, fmt.Sprintf("unmount %s: %v", m, err))
		}
	}
	for _, l := range sortedKeys(netLinks()) {
		if !h.links[l] && strings.HasPrefix(l, "vkp") {
			if out, err := exec.Command("ip", "link", "del", l).CombinedOutput(); err != nil {
				problems = append(problems, fmt.Sprintf("ip link del %s: %v: %s", l, err, out))
			}
		}
	}
	added := h.newCgroups()
	// Deepest first: a cgroup is removed once its children are.
	slices.SortFunc(added, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, c := range added {
		if err := syscall.Rmdir(c); err != nil && !os.IsNotExist(err) {
			problems = append(problems, fmt.Sprintf("remove cgroup %s: %v", c, err))
		}
	}
	for _, p := range hostPaths {
		if !h.existed[p] {
			if err := os.RemoveAll(p); err != nil {
				problems = append(problems, fmt.Sprintf("remove %s: %v", p, err))
			}
		}
	}
	return append(problems, h.leftovers()...)
}

// leftovers is what differs from the snapshot: nothing, after a clean
// teardown.
func (h *hostState) leftovers() []string {
	var out []string
	if pids := h.shims(); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes left: %v", pids))
	}
	for _, m := range h.newMounts() {
		out = append(out, "mount left: "+m)
	}
	for _, l := range sortedKeys(netLinks()) {
		if !h.links[l] {
			out = append(out, "network link left: "+l)
		}
	}
	for _, c := range h.newCgroups() {
		out = append(out, "cgroup left: "+c)
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil && !h.existed[p] {
			out = append(out, "path left: "+p)
		}
	}
	return out
}

// shims are the processes that run with the node's directory on their
// command line: containerd's shims outlive containerd by design.
func (h *hostState) shims() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), h.dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// newMounts are the mount points added since the snapshot, deepest first.
func (h *hostState) newMounts() []string {
	var out []string
	for m := range mountPoints() {
		if !h.mounts[m] {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

func (h *hostState) newCgroups() []string {
	var out []string
	for c := range cgroupDirs() {
		if !h.cgroups[c] {
			out = append(out, c)
		}
	}
	return out
}

// mountPoints are this mount namespace's mount points.
func mountPoints() map[string]bool {
	out := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out[unescapeMount(fields[4])] = true
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and
// backslash.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// cgroupDirs are the cgroup directories of every hierarchy (v1 and v2),
// four levels deep: where runc puts the pods' containers.
func cgroupDirs() map[string]bool {
	out := map[string]bool{}
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if depth > 4 {
			return
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.IsDir() {
				p := filepath.Join(dir, e.Name())
				if depth > 0 {
					out[p] = true
				}
				walk(p, depth+1)
			}
		}
	}
	walk("/sys/fs/cgroup", 0)
	return out
}

// netLinks are the host's network interfaces.
func netLinks() map[string]bool {
	out := map[string]bool{}
	entries, _ := os.ReadDir("/sys/class/net")
	for _, e := range entries {
		out[e.Name()] = true
	}
	return out
}
