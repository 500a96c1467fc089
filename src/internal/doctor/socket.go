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

	var refused, fixes []string
	for _, s := range servers {
		who := fmt.Sprintf("kube-apiserver pid %d (uid %d, gid %d, groups %v)", s.PID, s.UID, s.GID, s.Groups)
		switch {
		case !s.may(1, parent.uid, parent.gid, parent.perm):
			refused = append(refused, fmt.Sprintf("%s cannot enter %s, which is %s", who, filepath.Dir(path), parent))
			fixes = appendNew(fixes, fmt.Sprintf("let the apiserver search the socket's directory: chmod 0755 %s (it needs no read)", filepath.Dir(path)))
		case !s.may(2, sock.uid, sock.gid, sock.perm):
			refused = append(refused, who+" cannot connect")
			fixes = appendNew(fixes, fmt.Sprintf("give the socket to the apiserver's group: VAULT_KMS_SOCKET_GROUP=%d and VAULT_KMS_SOCKET_MODE=0660 (chart: socket.group: %d, socket.mode: \"0660\")", s.GID, s.GID))
		}
	}
	switch {
	case len(refused) > 0:
		d.add(socketCheck, Fail, seen+"; "+strings.Join(refused, "; "), strings.Join(fixes, "; "))
	case sock.perm&0o002 != 0:
		// Whoever can connect can have the plugin decrypt what it holds.
		d.add(socketCheck, Warn, seen+": any process on the node can connect and have the plugin decrypt",
			fmt.Sprintf("close it to others with %s: the apiserver's group and mode 0660", socketSettings))
	case len(servers) == 0:
		why := "no kube-apiserver process is visible (doctor runs outside the host's PID namespace, or on a node without one)"
		if scanErr != nil {
			why = fmt.Sprintf("cannot look for kube-apiserver processes: %v", scanErr)
		}
		d.add(socketCheck, Pass, fmt.Sprintf("%s; %s, so whether it can connect is not checked. A kube-apiserver that is not root (Talos, rootless kubeadm) needs %s", seen, why, socketSettings), "")
	default:
		d.add(socketCheck, Pass, fmt.Sprintf("%s; %s can connect", seen, describe(servers)), "")
	}
}

func appendNew(list []string, s string) []string {
	for _, have := range list {
		if have == s {
			return list
		}
	}
	return append(list, s)
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
