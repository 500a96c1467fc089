package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// nobody is the uid and gid kube-apiserver runs as on Talos.
const nobody = 65534

// TestMain lets the test binary act as a client that dials a socket as
// another user: the child is this binary with dialAsEnv set.
func TestMain(m *testing.M) {
	if sock := os.Getenv(dialAsEnv); sock != "" {
		c, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(dialRefused)
		}
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	dialAsEnv = "SOCKET_TEST_DIAL"
	// dialRefused is the child's exit code when the dial itself fails, so
	// that a child that could not even run never passes for a refusal.
	dialRefused = 3
)

// dialAs dials sock from a process running as uid:gid, a copy of this test
// binary in dir (which that user can read). It reports whether the dial
// succeeded and fails the test if the child did not get as far as dialling.
func dialAs(t *testing.T, dir, sock string, uid, gid uint32) bool {
	t.Helper()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dialer")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{dialAsEnv + "=" + sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &exit) && exit.ExitCode() == dialRefused:
		return false
	}
	t.Fatalf("the dialler as %d:%d did not run: %v: %s", uid, gid, err, out)
	return false
}

// TestListenOwnership creates real sockets with VAULT_KMS_SOCKET_MODE and
// VAULT_KMS_SOCKET_GROUP's values and checks, by the file's owner and by
// dialling as the apiserver's user, who can open them.
func TestListenOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test gives sockets to another group and dials as another user: run it as root")
	}
	for _, tc := range []struct {
		name       string
		mode       os.FileMode
		gid        int
		wantGID    uint32
		nobodyDial bool
	}{
		{"default: root only", 0o600, -1, 0, false},
		{"group nobody, mode 0660", 0o660, nobody, nobody, true},
		{"group nobody, mode 0600", 0o600, nobody, nobody, false},
		{"group root, mode 0660", 0o660, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The directory must let the other user reach the socket.
			dir := filepath.Join(t.TempDir(), "kms")
			if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Dir(filepath.Dir(dir)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "socket.sock")
			l, err := Listen(sock, tc.mode, tc.gid)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fi, err := os.Lstat(sock)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != tc.mode || st.Gid != tc.wantGID || st.Uid != 0 {
				t.Errorf("socket is %v uid %d gid %d; want %v uid 0 gid %d", fi.Mode().Perm(), st.Uid, st.Gid, tc.mode, tc.wantGID)
			}
			if got := dialAs(t, filepath.Dir(dir), sock, nobody, nobody); got != tc.nobodyDial {
				t.Errorf("uid/gid %d can dial: %v, want %v", nobody, got, tc.nobodyDial)
			}
		})
	}
}
