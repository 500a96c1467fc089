package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1beta1 "k8s.io/kms/apis/v1beta1"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/util"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/internal/config"
)

// probe calls the plugin's Status (v2) or Version (v1) on a socket, for
// health checks and for humans on a node.
func probe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", config.ListenEndpoint(), "socket of the plugin, as in the EncryptionConfiguration")
	api := fs.String("api", "v2", "KMS API to call: v2 (Status) or v1 (Version)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for one answer")
	wait := fs.Duration("wait", 0, "keep trying until the plugin is healthy or this much time has passed (for a pod that starts beside the plugin)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path, err := util.ParseEndpoint(*endpoint)
	if err != nil {
		fmt.Fprintf(stderr, "probe: -endpoint: %v\n", err)
		return 2
	}
	if *api != "v1" && *api != "v2" {
		fmt.Fprintf(stderr, "probe: -api=%q: use v2 or v1\n", *api)
		return 2
	}
	deadline := time.Now().Add(*wait)
	for {
		// Only the last attempt's complaint is worth reading.
		var errs bytes.Buffer
		code := probeOnce(path, *api, *timeout, stdout, &errs)
		if code != 1 || time.Now().After(deadline) {
			_, _ = io.Copy(stderr, &errs)
			return code
		}
		time.Sleep(time.Second)
	}
}

// probeOnce makes one call; api is v1 or v2, as probe checked.
func probeOnce(path, api string, timeout time.Duration, stdout, stderr io.Writer) int {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if api == "v1" {
		v, err := v1beta1.NewKeyManagementServiceClient(conn).Version(ctx, &v1beta1.VersionRequest{Version: "v1beta1"})
		if err != nil {
			fmt.Fprintf(stderr, "probe: Version on %s: %v\n", path, err)
			return 1
		}
		fmt.Fprintf(stdout, "version=%s runtime=%s %s\n", v.Version, v.RuntimeName, v.RuntimeVersion)
		return 0
	}
	st, err := kmsapi.NewKeyManagementServiceClient(conn).Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		fmt.Fprintf(stderr, "probe: Status on %s: %v\n", path, err)
		return 1
	}
	fmt.Fprintf(stdout, "version=%s healthz=%q key_id=%s\n", st.Version, st.Healthz, st.KeyId)
	if st.Healthz != "ok" {
		return 1
	}
	return 0
}
