package doctor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const socketCheck = "socket access"

// socketSettings names the settings that decide who may open the socket,
// with the chart's values beside them.
const socketSettings = "VAULT_KMS_SOCKET_GROUP and VAULT_KMS_SOCKET_MODE (chart: socket.group, socket.mode)"

// checkSocketAccess says whether the kube-apiservers on this host can
// connect to the plugin's socket. Talos and rootless control planes run the
// apiserver as uid and gid 65534, which a root-owned 0600 socket refuses;
// the apiserver then only logs "permission denied" and reports the KMS
// provider unhealthy.
func (d *Doctor) checkSocketAccess() {
	procRoot := d.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	servers, err := findAPIServers(procRoot)
	if err != nil {
		servers = nil // judged as "none visible", with the reason
	}
	d.judgeSocket(d.Cfg.SocketPath(), servers, err)
}

// judgeSocket adds the verdict for the socket at path and the apiservers
// seen; scanErr is why none could be looked for, if so.
func (d *Doctor) judgeSocket(path string, servers []apiserver, scanErr error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		d.add(socketCheck, Warn, fmt.Sprintf("nothing at %s: the plugin is not serving there", path),
			"start the plugin (serve) with this environment, or set VAULT_KMS_LISTEN to the socket it serves")
		return
	case err != nil:
		d.add(socketCheck, Fail, fmt.Sprintf("cannot inspect the socket: %v", err), "run doctor as root on the node, or in the plugin's pod")
		return
	case fi.Mode()&os.ModeSocket == 0:
		d.add(socketCheck, Fail, fmt.Sprintf("%s is a %s, not a socket", path, fi.Mode().Type()),
			"remove it, or set VAULT_KMS_LISTEN to the socket the plugin serves")
		return
	}
	sock := ownerOf(fi)
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		d.add(socketCheck, Fail, fmt.Sprintf("cannot inspect the socket's directory: %v", err), "")
		return
	}
	parent := ownerOf(dir)
	seen := fmt.Sprintf("%s is %s", path, sock)

	if len(servers) == 0 {
		why := "no kube-apiserver process is visible (doctor runs outside the host's PID namespace, or on a node without one)"
		if scanErr != nil {
			why = fmt.Sprintf("cannot look for kube-apiserver processes: %v", scanErr)
		}
		d.add(socketCheck, Pass, fmt.Sprintf("%s; %s, so whether it can connect is not checked. A kube-apiserver that is not root (Talos, rootless kubeadm) needs %s", seen, why, socketSettings), "")
		return
	}

	var refused []string
	fixGID := -1
	for _, s := range servers {
		switch {
		case !s.may(1, parent.uid, parent.gid, parent.perm):
			refused = append(refused, fmt.Sprintf("kube-apiserver pid %d (uid %d, gid %d, groups %v) cannot enter %s, which is %s", s.PID, s.UID, s.GID, s.Groups, filepath.Dir(path), parent))
		case !s.may(2, sock.uid, sock.gid, sock.perm):
			refused = append(refused, fmt.Sprintf("kube-apiserver pid %d (uid %d, gid %d, groups %v) cannot connect", s.PID, s.UID, s.GID, s.Groups))
			fixGID = s.GID
		}
	}
	switch {
	case len(refused) > 0 && fixGID == -1:
		d.add(socketCheck, Fail, seen+"; "+strings.Join(refused, "; "),
			fmt.Sprintf("let the apiserver search the socket's directory: chmod 0755 %s (it needs no read)", filepath.Dir(path)))
	case len(refused) > 0:
		d.add(socketCheck, Fail, seen+"; "+strings.Join(refused, "; "),
			fmt.Sprintf("give the socket to the apiserver's group: VAULT_KMS_SOCKET_GROUP=%d and VAULT_KMS_SOCKET_MODE=0660 (chart: socket.group: %d, socket.mode: \"0660\")", fixGID, fixGID))
	case sock.perm&0o002 != 0:
		d.add(socketCheck, Warn, fmt.Sprintf("%s: every kube-apiserver seen can connect, and so can any process on the node, which may then decrypt", seen),
			fmt.Sprintf("close it to others with %s: the apiserver's group and mode 0660", socketSettings))
	default:
		d.add(socketCheck, Pass, fmt.Sprintf("%s; %s can connect", seen, describe(servers)), "")
	}
}

// fileOwner is what decides who may use a file.
type fileOwner struct {
	uid, gid int
	perm     os.FileMode
}

func (o fileOwner) String() string {
	return fmt.Sprintf("owned by uid %d, gid %d, mode %04o", o.uid, o.gid, uint32(o.perm))
}

func ownerOf(fi os.FileInfo) fileOwner {
	o := fileOwner{uid: -1, gid: -1, perm: fi.Mode().Perm()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		o.uid, o.gid = int(st.Uid), int(st.Gid)
	}
	return o
}

func describe(servers []apiserver) string {
	var each []string
	for _, s := range servers {
		each = append(each, fmt.Sprintf("kube-apiserver pid %d (uid %d, gid %d)", s.PID, s.UID, s.GID))
	}
	return strings.Join(each, ", ")
}
