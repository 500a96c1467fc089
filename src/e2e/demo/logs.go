package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// showLogsOnFailure prints the last lines of every server's log after a
// failed run.
func (d *demo) showLogsOnFailure() {
	if !d.h.Failed() || d.interrupted.Load() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(d.bed.LogDir, "*.log"))
	for _, l := range logs {
		fmt.Fprintf(d.errOut, "--- last lines of %s\n%s\n", filepath.Base(l), procs.Tail(l, 15))
	}
	if notes := d.bedNotes.String(); notes != "" {
		fmt.Fprintf(d.errOut, "--- last lines of Vault's log\n%s\n", lastLines(withoutSecrets(notes), 15))
	}
}

// withoutSecrets drops the lines in which a Vault dev server prints its
// unseal key and root token.
func withoutSecrets(log string) string {
	lines := strings.Split(log, "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "Unseal Key:") || strings.HasPrefix(l, "Root Token:")
	})
	return strings.Join(lines, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
