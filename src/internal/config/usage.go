package config

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// Usage writes every setting the plugin reads, with defaults, for --help.
func Usage(w io.Writer) error {
	fmt.Fprintln(w, "Settings come from the environment.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Vault client (read as the Vault CLI reads them):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, v := range StandardVaultVars {
		fmt.Fprintf(tw, "  %s\t%s\n", v[0], v[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Go runtime (the chart sets GOMEMLIMIT from the container's memory limit):")
	for _, v := range GoRuntimeVars {
		fmt.Fprintf(tw, "  %s\t%s\n", v[0], v[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Plugin:")
	return envconfig.Usagef(Prefix, &Config{}, w, "  {{range .}}{{usage_key .}}\t{{usage_description .}}{{if usage_default .}} (default {{usage_default .}}){{end}}{{if usage_required .}} (required){{end}}\n{{end}}")
}
