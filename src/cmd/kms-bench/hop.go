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

// serveHop is the hop process: `kms-bench -serve-hop SOCKET`.
func serveHop(sock string) error {
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	// As long as the plugin's answer: "bench:vault:v1:" and 80 base64 bytes.
	gs := grpc.NewServer()
	kmsapi.RegisterKeyManagementServiceServer(gs, &hopServer{ct: make([]byte, 95)})
	return gs.Serve(l)
}

// startHop starts the hop process on dir/hop.sock and returns a client
// connection to it.
func startHop(ctx context.Context, dir string, cl *cleanups) (*grpc.ClientConn, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "hop.sock")
	p, err := startProc("hop", filepath.Join(dir, "hop.log"), os.Environ(), self, "-serve-hop", sock)
	if err != nil {
		return nil, err
	}
	cl.add(p.stop)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || p.exited() {
			return nil, fmt.Errorf("hop server did not start (see %s)", p.logPath)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	conn, err := dialUnix(sock)
	if err != nil {
		return nil, err
	}
	cl.add(func() { conn.Close() })
	return conn, nil
}
