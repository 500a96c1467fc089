package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/harness"
	"github.com/vault-kms-plugin/vault-kms-plugin/src/e2e/internal/procs"
)

// hopServer is a KMS v2 server that answers at once: the bare
// gRPC-over-unix-socket round trip that every KMS plugin adds. It runs in
// its own process, as a plugin does, so that the hop includes waking
// another process.
type hopServer struct {
	kmsapi.UnimplementedKeyManagementServiceServer
	ct []byte
}

func (h *hopServer) Status(context.Context, *kmsapi.StatusRequest) (*kmsapi.StatusResponse, error) {
	return &kmsapi.StatusResponse{Version: "v2", Healthz: "ok", KeyId: "hop"}, nil
}

func (h *hopServer) Encrypt(context.Context, *kmsapi.EncryptRequest) (*kmsapi.EncryptResponse, error) {
	return &kmsapi.EncryptResponse{Ciphertext: h.ct, KeyId: "hop"}, nil
}

// serveHop is the hop process: `bench -serve-hop SOCK`.
func serveHop(sock string) error {
	// As long as the plugin's answer: "bench:vault:v1:" and 80 base64 bytes.
	return serveKMS(sock, &hopServer{ct: make([]byte, 95)})
}

func serveKMS(sock string, srv kmsapi.KeyManagementServiceServer) error {
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	gs := grpc.NewServer()
	kmsapi.RegisterKeyManagementServiceServer(gs, srv)
	return gs.Serve(l)
}

// startServer starts this program as `bench -serve-ROLE dir/NAME.sock`
// with env, and returns the process and a client connection to it.
func startServer(ctx context.Context, h *harness.Program, role, name, dir string, env []string) (*procs.Process, *grpc.ClientConn, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(dir, name+".sock")
	p, err := h.Start(name, filepath.Join(dir, name+".log"), env, self, "-serve-"+role, sock)
	if err != nil {
		return nil, nil, err
	}
	_, err = procs.WaitFor(ctx, 10*time.Second, 20*time.Millisecond, name+" server's socket", func() error {
		if !p.Running() {
			h.Fatalf("%s server exited at start\n%s", name, harness.Output(p))
		}
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w\n%s", err, harness.Output(p))
	}
	conn, err := dialUnix(sock)
	if err != nil {
		return nil, nil, err
	}
	h.Cleanup(func() { conn.Close() })
	return p, conn, nil
}
