package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kmstypes "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"
)

// The prefixes the apiserver writes for the provider named "vault".
const (
	v2Prefix = "k8s:enc:kms:v2:vault:"
	v1Prefix = "k8s:enc:kms:v1:vault:"
)

// newSecretData is a Secret's data with a random password, so that its
// plaintext can be searched for in etcd.
func newSecretData(name string) map[string][]byte {
	r := make([]byte, 12)
	_, _ = rand.Read(r)
	return map[string][]byte{"password": []byte("pw-" + name + "-" + hex.EncodeToString(r))}
}

// createSecret creates a Secret in testNS and records it as written.
func (b *testBed) createSecret(t testing.TB, name string) {
	t.Helper()
	if err := b.tryCreateSecret(t, name); err != nil {
		t.Fatalf("create Secret %s/%s: %v", testNS, name, err)
	}
}

// tryCreateSecret creates a Secret and records it only if the apiserver
// stored it.
func (b *testBed) tryCreateSecret(t testing.TB, name string) error {
	t.Helper()
	data := newSecretData(name)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS}, Data: data}
	if _, err := b.Client.CoreV1().Secrets(testNS).Create(ctx(t), s, metav1.CreateOptions{}); err != nil {
		return err
	}
	b.written[testNS+"/"+name] = data
	return nil
}

// uniqueName is a fresh Secret name with a readable prefix.
func (b *testBed) uniqueName(prefix string) string {
	b.seq++
	return fmt.Sprintf("%s-%03d", prefix, b.seq)
}

// checkSecretsRead reads every written Secret through the API and compares
// its data with what was written.
func (b *testBed) checkSecretsRead(t testing.TB) {
	t.Helper()
	for _, key := range sortedKeys(b.written) {
		ns, name, _ := strings.Cut(key, "/")
		s, err := b.Client.CoreV1().Secrets(ns).Get(ctx(t), name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("read Secret %s: %v", key, err)
		}
		if !maps.EqualFunc(s.Data, b.written[key], bytes.Equal) {
			t.Fatalf("Secret %s reads back %q, want %q", key, s.Data, b.written[key])
		}
	}
}

// checkNothingLost lists the test's namespace through the API and etcd:
// exactly the written Secrets, with exactly their data.
func (b *testBed) checkNothingLost(t testing.TB) {
	t.Helper()
	list, err := b.Client.CoreV1().Secrets(testNS).List(ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list Secrets: %v", err)
	}
	got := map[string]map[string][]byte{}
	for _, s := range list.Items {
		got[s.Namespace+"/"+s.Name] = s.Data
	}
	if len(got) != len(b.written) {
		t.Fatalf("the API lists %d Secrets in %s, the test wrote %d:\nlisted %q\nwritten %q", len(got), testNS, len(b.written), sortedKeys(got), sortedKeys(b.written))
	}
	for k, want := range b.written {
		if !maps.EqualFunc(got[k], want, bytes.Equal) {
			t.Fatalf("Secret %s lists as %q, want %q", k, got[k], want)
		}
	}
	if n := len(b.EtcdSecrets(t, "/registry/secrets/"+testNS+"/")); n != len(b.written) {
		t.Fatalf("etcd holds %d Secrets under /registry/secrets/%s/, the test wrote %d", n, testNS, len(b.written))
	}
}

// rewriteAll reads and updates every Secret of the cluster, as
// `kubectl get secrets -A -o json | kubectl replace -f -` does: the
// apiserver writes again every object it read as stale (another key_id, or
// a provider other than the first).
func (b *testBed) rewriteAll(t testing.TB) int {
	t.Helper()
	list, err := b.Client.CoreV1().Secrets("").List(ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list Secrets: %v", err)
	}
	for i := range list.Items {
		s := &list.Items[i]
		if _, err := b.Client.CoreV1().Secrets(s.Namespace).Update(ctx(t), s, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("rewrite Secret %s/%s: %v", s.Namespace, s.Name, err)
		}
	}
	return len(list.Items)
}

// decodeV2 parses a KMS v2 value as etcd holds it: the prefix, then the
// EncryptedObject protobuf (key_id and the plugin's ciphertext in clear).
func decodeV2(raw []byte) (*kmstypes.EncryptedObject, error) {
	if !bytes.HasPrefix(raw, []byte(v2Prefix)) {
		return nil, fmt.Errorf("does not start with %q: %q", v2Prefix, head(raw))
	}
	var o kmstypes.EncryptedObject
	if err := proto.Unmarshal(raw[len(v2Prefix):], &o); err != nil {
		return nil, fmt.Errorf("not an EncryptedObject: %w", err)
	}
	return &o, nil
}

// decodeV1 parses a KMS v1 value: the prefix, a 2-byte length, the
// plugin's ciphertext of the DEK, then the data sealed with the DEK.
func decodeV1(raw []byte) (dek []byte, err error) {
	if !bytes.HasPrefix(raw, []byte(v1Prefix)) {
		return nil, fmt.Errorf("does not start with %q: %q", v1Prefix, head(raw))
	}
	rest := raw[len(v1Prefix):]
	if len(rest) < 2 {
		return nil, fmt.Errorf("too short")
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n {
		return nil, fmt.Errorf("DEK length %d exceeds the value", n)
	}
	return rest[2 : 2+n], nil
}

// checkStoredV2 checks what etcd holds for a written Secret: KMS v2
// ciphertext from provider "vault", no plaintext, the key_id and the
// plugin's DEK ciphertext naming wantKey and its version. It returns the
// key_id.
func (b *testBed) checkStoredV2(t testing.TB, key string, raw []byte, keyIDPrefix, dekPrefix string) string {
	t.Helper()
	o, err := decodeV2(raw)
	if err != nil {
		t.Fatalf("etcd value of %s: %v", key, err)
	}
	b.checkNoPlaintext(t, key, raw)
	if !strings.HasPrefix(o.KeyID, keyIDPrefix) {
		t.Fatalf("etcd value of %s: key_id %q, want it to start with %q", key, o.KeyID, keyIDPrefix)
	}
	if !bytes.HasPrefix(o.EncryptedDEKSource, []byte(dekPrefix)) {
		t.Fatalf("etcd value of %s: the plugin's ciphertext is %q, want it to start with %q", key, head(o.EncryptedDEKSource), dekPrefix)
	}
	return o.KeyID
}

// checkNoPlaintext fails if raw holds any written Secret's value in clear.
func (b *testBed) checkNoPlaintext(t testing.TB, key string, raw []byte) {
	t.Helper()
	for k, data := range b.written {
		for _, v := range data {
			if bytes.Contains(raw, v) {
				t.Fatalf("etcd value of %s holds the plaintext of Secret %s", key, k)
			}
		}
	}
}

// scanAllV2 checks every Secret in etcd (all namespaces): KMS v2, the
// wanted key_id and DEK ciphertext prefixes, no plaintext. It returns the
// number of values and the distinct plugin ciphertexts (DEK sources).
func (b *testBed) scanAllV2(t testing.TB, keyIDPrefix, dekPrefix string) (int, map[string]int) {
	t.Helper()
	kvs := b.EtcdSecrets(t, "/registry/secrets/")
	deks := map[string]int{}
	for _, kv := range kvs {
		b.checkStoredV2(t, string(kv.Key), kv.Value, keyIDPrefix, dekPrefix)
		o, _ := decodeV2(kv.Value)
		deks[string(o.EncryptedDEKSource)]++
	}
	return len(kvs), deks
}

func head(b []byte) []byte {
	if len(b) > 48 {
		return b[:48]
	}
	return b
}

func isInternal(err error) bool { return apierrors.IsInternalError(err) }
