// Package server is the plugin's transport: the unix socket, the gRPC
// server on it, the KMS v2 and v1beta1 adapters over the core (package
// kms), the interceptors, and the mapping from errors to gRPC codes.
package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Listen listens on a unix socket at path, with the file mode mode and,
// when gid is not -1, the group gid (so that a kube-apiserver that is not
// root, as on Talos, can open it). It creates the parent directory, removes
// a socket left behind by a dead plugin (one nothing answers on), and
// refuses to touch anything else found at path.
func Listen(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket directory (VAULT_KMS_LISTEN): %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: remove it or change VAULT_KMS_LISTEN", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another process is serving on %s: stop it or change VAULT_KMS_LISTEN", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("inspect socket path (VAULT_KMS_LISTEN): %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (VAULT_KMS_LISTEN): %w", path, err)
	}
	// The group first: between the two calls the socket is then never open
	// to a group it was not meant for.
	if gid != -1 {
		if err := os.Lchown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("give socket %s to group %d (VAULT_KMS_SOCKET_GROUP): %w", path, gid, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket %s (VAULT_KMS_SOCKET_MODE): %w", path, err)
	}
	return l, nil
}
