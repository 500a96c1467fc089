package server

import (
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ServeCore serves core on a fresh socket until the test ends and returns
// a connection to it. It is exported for package server_test's tests.
func ServeCore(t *testing.T, core Core, maxInflight int) *grpc.ClientConn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "kms.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := New(core, "test", maxInflight, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
