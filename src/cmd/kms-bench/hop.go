package main

import (
	"context"
	"net"
	"path/filepath"

	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
)

// hopServer is an in-process KMS v2 server that answers at once: the bare
// gRPC-over-unix-socket round trip that every KMS plugin adds.
type hopServer struct {
	kmsapi.UnimplementedKeyManagementServiceServer
	ct []byte
	gs *grpc.Server
}

func (h *hopServer) Status(context.Context, *kmsapi.StatusRequest) (*kmsapi.StatusResponse, error) {
	return &kmsapi.StatusResponse{Version: "v2", Healthz: "ok", KeyId: "hop"}, nil
}

func (h *hopServer) Encrypt(context.Context, *kmsapi.EncryptRequest) (*kmsapi.EncryptResponse, error) {
	return &kmsapi.EncryptResponse{Ciphertext: h.ct, KeyId: "hop"}, nil
}

// startHop serves on dir/hop.sock and returns a client connection to it.
func startHop(dir string, cl *cleanups) (*grpc.ClientConn, error) {
	sock := filepath.Join(dir, "hop.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	// As long as the plugin's answer: "bench:vault:v1:" and 80 base64 bytes.
	h := &hopServer{ct: make([]byte, 95), gs: grpc.NewServer()}
	kmsapi.RegisterKeyManagementServiceServer(h.gs, h)
	go func() { _ = h.gs.Serve(l) }()
	cl.add(h.gs.Stop)
	conn, err := dialUnix(sock)
	if err != nil {
		return nil, err
	}
	cl.add(func() { conn.Close() })
	return conn, nil
}
