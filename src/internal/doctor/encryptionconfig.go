package doctor

import (
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// encryptionConfiguration is the part of apiserver.config.k8s.io/v1
// EncryptionConfiguration the checks read. It is declared here rather than
// imported, to keep k8s.io/apiserver out of the plugin.
type encryptionConfiguration struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Resources  []resourceEntry `json:"resources"`
}

type resourceEntry struct {
	Resources []string   `json:"resources"`
	Providers []provider `json:"providers"`
}

type provider struct {
	KMS *struct {
		APIVersion string `json:"apiVersion"`
		Name       string `json:"name"`
		Endpoint   string `json:"endpoint"`
		CacheSize  *int   `json:"cachesize"`
		Timeout    string `json:"timeout"`
	} `json:"kms"`
	Identity *struct{} `json:"identity"`
	// Any other provider (aescbc, aesgcm, secretbox) only counts as "other".
	AESCBC    any `json:"aescbc"`
	AESGCM    any `json:"aesgcm"`
	Secretbox any `json:"secretbox"`
}

func (d *Doctor) checkEncryptionConfig() {
	const check = "encryption config"
	b, err := os.ReadFile(d.EncryptionConfig)
	if err != nil {
		d.add(check, Fail, err.Error(), "pass the file kube-apiserver reads (--encryption-provider-config)")
		return
	}
	var ec encryptionConfiguration
	if err := yaml.Unmarshal(b, &ec); err != nil {
		d.add(check, Fail, fmt.Sprintf("%s is not YAML the apiserver can read: %v", d.EncryptionConfig, err), "")
		return
	}
	if ec.Kind != "EncryptionConfiguration" || ec.APIVersion != "apiserver.config.k8s.io/v1" {
		d.add(check, Fail, fmt.Sprintf("kind %q apiVersion %q", ec.Kind, ec.APIVersion), "use kind: EncryptionConfiguration, apiVersion: apiserver.config.k8s.io/v1")
		return
	}
	found := false
	for _, r := range ec.Resources {
		what := strings.Join(r.Resources, ",")
		for i, p := range r.Providers {
			if !d.isThisPlugin(p) {
				continue
			}
			found = true
			d.checkProvider(what, i, r.Providers)
		}
	}
	if !found {
		d.add(check, Fail, fmt.Sprintf("no kms provider has endpoint %s (this plugin's VAULT_KMS_LISTEN)", d.Cfg.Listen),
			fmt.Sprintf("set the kms provider's endpoint to %s, or VAULT_KMS_LISTEN to the endpoint in the file", d.Cfg.Listen))
		return
	}
	d.checkColdStart(ec)
}

func (d *Doctor) checkProvider(resources string, idx int, providers []provider) {
	check := "encryption config " + resources
	k := providers[idx].KMS
	var fails, warns []string
	if k.APIVersion != "v2" {
		fails = append(fails, fmt.Sprintf("the kms provider uses KMS %s (deprecated; needs the KMSv1 feature gate): set apiVersion: v2", or(k.APIVersion, "v1")))
	}
	if k.Name == "" || strings.Contains(k.Name, ":") {
		fails = append(fails, fmt.Sprintf("provider name %q must be non-empty and without ':'", k.Name))
	}
	if k.APIVersion == "v2" && k.CacheSize != nil {
		fails = append(fails, "cachesize is a KMS v1 setting; remove it")
	}
	if t, err := time.ParseDuration(or(k.Timeout, "3s")); err == nil && t <= d.Cfg.VaultTimeout {
		warns = append(warns, fmt.Sprintf("provider timeout %s is not above VAULT_KMS_VAULT_TIMEOUT=%s: the apiserver gives up before the plugin does", t, d.Cfg.VaultTimeout))
	}
	if idx != 0 {
		warns = append(warns, "the kms provider is not first: new writes use the provider before it")
	}
	for i, p := range providers {
		if p.Identity != nil && i < idx {
			fails = append(fails, "identity {} comes before the kms provider: new data would be stored unencrypted; list identity {} last")
		}
	}
	if last := providers[len(providers)-1]; last.Identity == nil {
		warns = append(warns, "identity {} is not listed last: data written before encryption was turned on cannot be read")
	}
	switch {
	case len(fails) > 0:
		d.add(check, Fail, strings.Join(fails, "; "), "fix the file, then restart kube-apiserver")
	case len(warns) > 0:
		d.add(check, Warn, strings.Join(warns, "; "), "")
	default:
		d.add(check, Pass, fmt.Sprintf("kms v2 provider %q on %s, identity {} last", k.Name, k.Endpoint), "")
	}
}

func normalize(endpoint string) string {
	return "/" + strings.TrimLeft(strings.TrimPrefix(endpoint, "unix://"), "/")
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
