package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
)

// encryptionConfig is an EncryptionConfiguration whose entries are given
// as YAML list items.
func encryptionConfig(entries ...string) string {
	return "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n" + strings.Join(entries, "")
}

const (
	ourKMS = `      - kms:
          apiVersion: v2
          name: vault
          endpoint: unix:///var/run/kmsplugin/socket.sock
          timeout: 3s
`
	otherKMS = `      - kms:
          apiVersion: v2
          name: other
          endpoint: unix:///var/run/other/socket.sock
`
	identity = "      - identity: {}\n"
)

func entry(resources string, providers ...string) string {
	return "  - resources: " + resources + "\n    providers:\n" + strings.Join(providers, "")
}

func TestDoctorColdStart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deployment Deployment
		file       string
		verdicts   []Verdict
		want       []string
	}{
		{"secrets only", DeploymentDaemonSet, encryptionConfig(entry("[secrets]", ourKMS, identity)), nil, nil},
		{"configmaps, daemonset", DeploymentDaemonSet, encryptionConfig(entry("[secrets, configmaps]", ourKMS, identity)),
			[]Verdict{Warn}, []string{"DaemonSet pod cannot start without its ConfigMap", `before "configmaps"`, "staticPod.enabled=true"}},
		{"configmaps with a core group dot", DeploymentDaemonSet, encryptionConfig(entry("[configmaps.]", ourKMS, identity)),
			[]Verdict{Warn}, []string{`before "configmaps."`}},
		{"core wildcard, unknown", DeploymentUnknown, encryptionConfig(entry("['*.']", ourKMS, identity)),
			[]Verdict{Warn}, []string{"if the plugin runs as a DaemonSet", "-deployment=static-pod", `before "*."`}},
		{"all resources, static pod", DeploymentStaticPod, encryptionConfig(entry("['*.*']", ourKMS, identity)),
			[]Verdict{Pass}, []string{"static pod"}},
		{"kms second still reads configmaps", DeploymentDaemonSet, encryptionConfig(entry("['*.*']", identity, ourKMS)),
			[]Verdict{Warn}, []string{`before "*.*"`}},
		{"configmaps taken by an earlier entry", DeploymentDaemonSet, encryptionConfig(entry("[configmaps]", identity), entry("['*.*']", ourKMS, identity)), nil, nil},
		{"configmaps under another plugin", DeploymentDaemonSet, encryptionConfig(entry("[configmaps]", otherKMS, identity), entry("['*.*']", ourKMS, identity)), nil, nil},
		{"a group wildcard does not cover configmaps", DeploymentDaemonSet, encryptionConfig(entry("['*.apps', secrets]", ourKMS, identity)), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "enc.yaml")
			if err := os.WriteFile(f, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			d := &Doctor{Cfg: &config.Config{Listen: "unix:///var/run/kmsplugin/socket.sock"}, EncryptionConfig: f, Deployment: tc.deployment}
			d.checkEncryptionConfig()
			expectResults(t, d.results, "encryption config cold start", tc.verdicts, tc.want)
		})
	}
}

func TestDoctorParseDeployment(t *testing.T) {
	for _, tc := range []struct {
		flag    string
		want    Deployment
		wantErr bool
	}{
		{"", DeploymentUnknown, false},
		{"daemonset", DeploymentDaemonSet, false},
		{" DaemonSet ", DeploymentDaemonSet, false},
		{"static-pod", DeploymentStaticPod, false},
		{"staticpod", "", true},
		{"deployment", "", true},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			got, err := ParseDeployment(tc.flag)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "-deployment=") || !strings.Contains(err.Error(), "use daemonset, static-pod") {
					t.Fatalf("error %v, want one naming -deployment and its values", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
