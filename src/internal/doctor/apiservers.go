package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// apiserver is a kube-apiserver process seen in /proc, with the
// credentials the kernel checks a socket's permissions against.
type apiserver struct {
	PID    int
	UID    int
	GID    int
	Groups []int
}

// findAPIServers lists the kube-apiserver processes visible under procRoot
// (normally /proc). A process that exits while being read is left out: it
// cannot be the one that will connect.
func findAPIServers(procRoot string) ([]apiserver, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", procRoot, err)
	}
	var found []apiserver
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		status, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "status"))
		if err != nil {
			continue
		}
		if p, ok := parseAPIServerStatus(pid, string(status)); ok {
			found = append(found, p)
		}
	}
	return found, nil
}

// parseAPIServerStatus reads a /proc/PID/status file. It takes the
// filesystem uid and gid (the fourth of the Uid: and Gid: fields), which
// are what Linux checks file permissions against.
func parseAPIServerStatus(pid int, status string) (apiserver, bool) {
	p := apiserver{PID: pid, UID: -1, GID: -1}
	isAPIServer := false
	for _, line := range strings.Split(status, "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		switch key {
		case "Name":
			isAPIServer = len(fields) == 1 && fields[0] == "kube-apiserver"
		case "Uid":
			p.UID = fsID(fields)
		case "Gid":
			p.GID = fsID(fields)
		case "Groups":
			for _, f := range fields {
				if g, err := strconv.Atoi(f); err == nil {
					p.Groups = append(p.Groups, g)
				}
			}
		}
	}
	return p, isAPIServer && p.UID >= 0 && p.GID >= 0
}

func fsID(fields []string) int {
	if len(fields) != 4 {
		return -1
	}
	id, err := strconv.Atoi(fields[3])
	if err != nil {
		return -1
	}
	return id
}

// inGroup says whether gid is the process's group or one of its
// supplementary groups.
func (p apiserver) inGroup(gid int) bool {
	if p.GID == gid {
		return true
	}
	for _, g := range p.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

// may says whether p gets the permission bits want (2 write, 1 search) on
// a file of owner uid, group gid and mode perm. Like the kernel, it uses
// only the first class that matches: an owner without the bit is refused
// even when the group or others have it. Root passes every check
// (CAP_DAC_OVERRIDE).
func (p apiserver) may(want os.FileMode, uid, gid int, perm os.FileMode) bool {
	switch {
	case p.UID == 0:
		return true
	case p.UID == uid:
		return perm>>6&want == want
	case p.inGroup(gid):
		return perm>>3&want == want
	}
	return perm&want == want
}
