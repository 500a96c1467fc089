package config

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// serviceLinkRE matches the variables the kubelet adds for every Service of
// the pod's namespace (a Service named vault-kms-plugin-metrics gives
// VAULT_KMS_PLUGIN_METRICS_SERVICE_HOST, ..._PORT_8787_TCP_ADDR and so on):
// they are not settings and must not stop the plugin.
var serviceLinkRE = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$`)

// pluginVarNames are the VAULT_KMS_* names of Config's fields, read from
// their envconfig tags, so that a field added to Config is known here too.
func pluginVarNames() []string {
	var names []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("envconfig"); tag != "" {
			names = append(names, Prefix+"_"+tag)
		}
	}
	return names
}

// checkUnknown refuses a VAULT_KMS_* variable the plugin does not read: a
// misspelt setting would otherwise be ignored and its default used.
func checkUnknown(environ []string) error {
	known := pluginVarNames()
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, Prefix+"_") && !slices.Contains(known, name) && !serviceLinkRE.MatchString(name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	var msgs []string
	for _, name := range unknown {
		msgs = append(msgs, fmt.Sprintf("%s is not a setting of this plugin: did you mean %s? (--help lists every setting)", name, nearest(name, known)))
	}
	return fmt.Errorf("%s", strings.Join(msgs, "\n"))
}

// nearest is the candidate with the smallest edit distance to name.
func nearest(name string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := editDistance(name, c); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes (the
// names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// methodVars are the variables that only some auth methods read, with
// those methods.
var methodVars = map[string][]string{
	"VAULT_TOKEN":                      {AuthToken},
	Prefix + "_TOKEN_FILE":             {AuthToken},
	Prefix + "_SA_TOKEN_FILE":          {AuthKubernetes, AuthJWT},
	Prefix + "_APPROLE_ROLE_ID":        {AuthAppRole},
	Prefix + "_APPROLE_SECRET_ID_FILE": {AuthAppRole},
}

// inapplicable warns of a variable that is set but that the chosen auth
// method does not read: it is harmless, but it says the operator expects
// something that will not happen.
func inapplicable(method string, getenv func(string) string) []string {
	var warnings []string
	for name, readers := range methodVars {
		if getenv(name) != "" && !slices.Contains(readers, method) {
			warnings = append(warnings, fmt.Sprintf("%s is set but %s_AUTH_METHOD=%s does not read it: remove it, or set %s_AUTH_METHOD=%s", name, Prefix, method, Prefix, strings.Join(readers, " or ")))
		}
	}
	if role := getenv(Prefix + "_AUTH_ROLE"); role != "" && !slices.Contains([]string{AuthKubernetes, AuthJWT, AuthCert}, method) {
		warnings = append(warnings, fmt.Sprintf("%s_AUTH_ROLE is set but %s_AUTH_METHOD=%s does not read it: remove it", Prefix, Prefix, method))
	}
	slices.Sort(warnings)
	return warnings
}
