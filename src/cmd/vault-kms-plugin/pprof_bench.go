//go:build benchpprof

package main

import (
	"net/http"
	_ "net/http/pprof" // the profiles, on http.DefaultServeMux
	"os"
)

// Only `bench -pprof` builds this (tag benchpprof): the plugin then serves
// net/http/pprof on BENCH_PPROF_ADDR (127.0.0.1:port) so that it can be
// profiled under the bench's load. Release builds have no such endpoint.
func init() {
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
