package kms

// Limits of the KMS v2 API; v1 has none, but its DEKs are just as small.
const (
	maxKeyIDLen      = 1024
	maxCiphertextLen = 1024
	// maxPlaintextLen keeps the ciphertext under maxCiphertextLen: the
	// apiserver only ever sends a 32-byte DEK or seed.
	maxPlaintextLen = 512
)
