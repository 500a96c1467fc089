package doctor

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const nobody = 65534

// openDir makes dir and its parents up to the test's temp root searchable
// by everyone, as /var/run is on a node: t.TempDir's are 0700.
func openDir(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// serveSocket listens on a real unix socket in dir with the given owner
// and mode.
func serveSocket(t *testing.T, dir string, uid, gid int, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "socket.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// startAPIServer runs a real process named kube-apiserver (a copy of
// sleep) under uid and gid, so that /proc shows it as an apiserver would.
func startAPIServer(t *testing.T, dir string, uid, gid uint32, groups ...uint32) int {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kube-apiserver")
	copyFile(t, sleep, bin)
	cmd := exec.Command(bin, "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s as %d:%d: %v", bin, uid, gid, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// seen finds the process pid among the apiservers in the real /proc; the
// verdict is then taken on it alone, since other tests on the machine may
// run apiservers of their own.
func seen(t *testing.T, pid int) apiserver {
	t.Helper()
	all, err := findAPIServers("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.PID == pid {
			return s
		}
	}
	t.Fatalf("kube-apiserver pid %d not found in /proc among %+v", pid, all)
	return apiserver{}
}

func TestSocketAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test makes sockets and processes of other users and needs root")
	}
	type apiserverCred struct {
		uid, gid uint32
		groups   []uint32
	}
	for _, tc := range []struct {
		name      string
		apiserver *apiserverCred // nil: none running
		sockUID   int
		sockGID   int
		sockMode  os.FileMode
		dirMode   os.FileMode
		verdict   Verdict
		want      []string // in the detail or the fix
	}{
		{"root apiserver, root 0600", &apiserverCred{0, 0, nil}, 0, 0, 0o600, 0o755, Pass,
			[]string{"owned by uid 0, gid 0, mode 0600", "(uid 0, gid 0) can connect"}},
		{"nobody apiserver, root 0600", &apiserverCred{nobody, nobody, nil}, 0, 0, 0o600, 0o755, Fail,
			[]string{"(uid 65534, gid 65534, groups [", "cannot connect", "VAULT_KMS_SOCKET_GROUP=65534 and VAULT_KMS_SOCKET_MODE=0660", `socket.group: 65534, socket.mode: "0660"`}},
		{"nobody apiserver, group nobody 0660", &apiserverCred{nobody, nobody, nil}, 0, nobody, 0o660, 0o755, Pass,
			[]string{"gid 65534, mode 0660", "(uid 65534, gid 65534) can connect"}},
		{"supplementary group", &apiserverCred{nobody, nobody, []uint32{4242}}, 0, 4242, 0o660, 0o755, Pass,
			[]string{"gid 4242, mode 0660", "can connect"}},
		{"group without write", &apiserverCred{nobody, nobody, nil}, 0, nobody, 0o640, 0o755, Fail,
			[]string{"mode 0640", "cannot connect", "VAULT_KMS_SOCKET_MODE=0660"}},
		{"nobody apiserver, 0666", &apiserverCred{nobody, nobody, nil}, 0, 0, 0o666, 0o755, Warn,
			[]string{"mode 0666", "any process on the node can connect", "mode 0660"}},
		{"no apiserver, 0666", nil, 0, 0, 0o666, 0o755, Warn,
			[]string{"mode 0666", "any process on the node can connect"}},
		{"directory closed", &apiserverCred{nobody, nobody, nil}, 0, nobody, 0o660, 0o750, Fail,
			[]string{"cannot enter", "mode 0750", "chmod 0755"}},
		{"no apiserver", nil, 0, 0, 0o600, 0o755, Pass,
			[]string{"no kube-apiserver process is visible", "not checked", "VAULT_KMS_SOCKET_GROUP and VAULT_KMS_SOCKET_MODE (chart: socket.group, socket.mode)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "kmsplugin")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			openDir(t, dir)
			var servers []apiserver
			if tc.apiserver != nil {
				pid := startAPIServer(t, filepath.Dir(dir), tc.apiserver.uid, tc.apiserver.gid, tc.apiserver.groups...)
				s := seen(t, pid)
				if s.UID != int(tc.apiserver.uid) || s.GID != int(tc.apiserver.gid) {
					t.Fatalf("/proc says %+v; started as %d:%d", s, tc.apiserver.uid, tc.apiserver.gid)
				}
				servers = []apiserver{s}
			}
			path := serveSocket(t, dir, tc.sockUID, tc.sockGID, tc.sockMode)
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}

			d := &Doctor{}
			d.judgeSocket(path, servers, nil)
			if len(d.results) != 1 {
				t.Fatalf("%d results: %+v", len(d.results), d.results)
			}
			r := d.results[0]
			if r.Check != socketCheck || r.Verdict != tc.verdict {
				t.Fatalf("%s %s: %s / %s; want %s", r.Verdict, r.Check, r.Detail, r.Fix, tc.verdict)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Detail+" fix: "+r.Fix, w) {
					t.Errorf("%q / %q lacks %q", r.Detail, r.Fix, w)
				}
			}
		})
	}
}

func TestSocketAccessWithoutSocket(t *testing.T) {
	dir := t.TempDir()
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		path    string
		verdict Verdict
		want    string
	}{
		{"missing", filepath.Join(dir, "socket.sock"), Warn, "the plugin is not serving there"},
		{"regular file", notSocket, Fail, "not a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Doctor{}
			d.judgeSocket(tc.path, nil, nil)
			if len(d.results) != 1 || d.results[0].Verdict != tc.verdict || !strings.Contains(d.results[0].Detail, tc.want) {
				t.Fatalf("%+v; want %s with %q", d.results, tc.verdict, tc.want)
			}
		})
	}
}

// TestFindAPIServersReadsProcRoot proves the scan takes its root as given:
// a directory with no processes has no apiserver, and a missing one is an
// error that names it.
func TestFindAPIServersReadsProcRoot(t *testing.T) {
	empty := t.TempDir()
	if got, err := findAPIServers(empty); err != nil || len(got) != 0 {
		t.Fatalf("empty root: %+v, %v", got, err)
	}
	missing := filepath.Join(empty, "nothing")
	if _, err := findAPIServers(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing root: %v", err)
	}
}

// TestParseAPIServerStatus covers what a real process cannot show: status
// files cut short or of another shape. Real processes are read in
// TestSocketAccess.
func TestParseAPIServerStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		ok     bool
		want   apiserver
	}{
		{"apiserver", "Name:\tkube-apiserver\nUid:\t1\t2\t3\t65534\nGid:\t4\t5\t6\t65534\nGroups:\t10 20 \n", true,
			apiserver{PID: 7, UID: 65534, GID: 65534, Groups: []int{10, 20}}},
		{"other name", "Name:\tkube-apiserver-x\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n", false, apiserver{}},
		{"no Uid line", "Name:\tkube-apiserver\nGid:\t0\t0\t0\t0\n", false, apiserver{}},
		{"short Gid", "Name:\tkube-apiserver\nUid:\t0\t0\t0\t0\nGid:\t0\n", false, apiserver{}},
		{"empty", "", false, apiserver{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseAPIServerStatus(7, tc.status)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v (%+v)", ok, tc.ok, got)
			}
			if ok && (got.PID != tc.want.PID || got.UID != tc.want.UID || got.GID != tc.want.GID || fmt.Sprint(got.Groups) != fmt.Sprint(tc.want.Groups)) {
				t.Fatalf("%+v, want %+v", got, tc.want)
			}
		})
	}
}
