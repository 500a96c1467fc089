package procs

import (
	"errors"
	"path/filepath"
	"runtime"
)

// RepoRoot is the repository's root, found from this file's location at
// build time, so that tests and `go run` find it from any directory.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", errors.New("cannot locate the repository from the source file (built with -trimpath?)")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", "..")), nil
}
