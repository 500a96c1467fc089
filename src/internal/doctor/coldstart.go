package doctor

import (
	"fmt"
	"slices"
	"strings"
)

// Deployment says how the plugin is run, which decides whether it can
// start while the apiserver cannot read ConfigMaps.
type Deployment string

const (
	// DeploymentUnknown: the doctor was not told.
	DeploymentUnknown Deployment = ""
	// DeploymentDaemonSet: the chart's DaemonSet, settings from a ConfigMap.
	DeploymentDaemonSet Deployment = "daemonset"
	// DeploymentStaticPod: the chart's static pod, settings inline; the
	// kubelet starts it without the apiserver.
	DeploymentStaticPod Deployment = "static-pod"
)

// ParseDeployment reads the doctor's -deployment flag.
func ParseDeployment(s string) (Deployment, error) {
	switch d := Deployment(strings.ToLower(strings.TrimSpace(s))); d {
	case DeploymentUnknown, DeploymentDaemonSet, DeploymentStaticPod:
		return d, nil
	}
	return "", fmt.Errorf("-deployment=%q is not a way to run the plugin: use %s, %s, or leave it out", s, DeploymentDaemonSet, DeploymentStaticPod)
}

// coversConfigMaps reports whether an entry's resources include
// configmaps, by name or by a wildcard the apiserver applies to them.
func coversConfigMaps(resources []string) (by string, ok bool) {
	for _, r := range resources {
		switch strings.ToLower(strings.TrimSpace(r)) {
		case "configmaps", "configmaps.", "*.", "*.*":
			return r, true
		}
	}
	return "", false
}

// checkColdStart warns when this plugin encrypts ConfigMaps while it needs
// a ConfigMap to start: after a full control-plane restart the apiserver
// cannot read ConfigMaps without the plugin, and the kubelet cannot start
// the plugin's pod without its ConfigMap.
func (d *Doctor) checkColdStart(ec encryptionConfiguration) {
	const check = "encryption config cold start"
	// The apiserver uses the first entry that covers a resource.
	entry := slices.IndexFunc(ec.Resources, func(r resourceEntry) bool {
		_, ok := coversConfigMaps(r.Resources)
		return ok
	})
	if entry < 0 || !slices.ContainsFunc(ec.Resources[entry].Providers, d.isThisPlugin) {
		return
	}
	by, _ := coversConfigMaps(ec.Resources[entry].Resources)
	deadlock := fmt.Sprintf("the kms provider in %s encrypts ConfigMaps, so after a cold start of the control plane the apiserver cannot read any ConfigMap until this plugin runs", d.EncryptionConfig)
	fix := fmt.Sprintf("list configmaps in an entry of its own before %q with identity {} (or aescbc) first and this kms provider after it until every ConfigMap is rewritten (kubectl get configmaps -A -o json | kubectl replace -f -); or run the plugin as the chart's static pod (helm template --set staticPod.enabled=true), which needs no ConfigMap", by)
	switch d.Deployment {
	case DeploymentStaticPod:
		d.add(check, Pass, "the kms provider encrypts ConfigMaps ("+by+"); the plugin runs as a static pod, which the kubelet starts without the apiserver", "")
	case DeploymentDaemonSet:
		d.add(check, Warn, deadlock+", and the plugin's DaemonSet pod cannot start without its ConfigMap: neither comes up", fix)
	default:
		d.add(check, Warn, deadlock+"; if the plugin runs as a DaemonSet with its settings in a ConfigMap (the chart's default), its pod cannot start without that ConfigMap and neither comes up (pass -deployment=static-pod if it runs as a static pod)", fix)
	}
}

func (d *Doctor) isThisPlugin(p provider) bool {
	return p.KMS != nil && normalize(p.KMS.Endpoint) == normalize(d.Cfg.Listen)
}
