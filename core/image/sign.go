package image

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// Key files are one line of text: a label and the base64 key, so that an
// operator can tell them apart and paste them into configuration.
const (
	privateKeyLabel = "diskcast-ed25519-private"
	publicKeyLabel  = "diskcast-ed25519-public"
)

func signedMessage(digest [32]byte) []byte {
	return append([]byte(SignaturePrefix), digest[:]...)
}

// KeyFingerprint is a short, stable name for a public key.
func KeyFingerprint(pub []byte) string {
	s := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(s[:8])
}

// GenerateKey writes a new key pair to path (private, mode 0600) and
// path.pub, refusing to overwrite either.
func GenerateKey(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeNew(path, privateKeyLabel+" "+base64.StdEncoding.EncodeToString(priv.Seed())+"\n", 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(path+".pub", publicKeyLabel+" "+base64.StdEncoding.EncodeToString(pub)+"\n", 0o644); err != nil {
		os.Remove(path)
		return nil, err
	}
	return pub, nil
}

func writeNew(path, content string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readKey(path, label string, size int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	got, enc, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || got != label {
		return nil, fmt.Errorf("%s: not a %s key file (want a line %q)", path, label, label+" <base64>")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil || len(key) != size {
		return nil, fmt.Errorf("%s: key is not %d base64-encoded bytes", path, size)
	}
	return key, nil
}

// ReadPrivateKey loads a private key written by GenerateKey.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	seed, err := readKey(path, privateKeyLabel, ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ReadPublicKey loads a public key written by GenerateKey. A private key
// file is accepted too: its public half is used.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	if priv, err := ReadPrivateKey(path); err == nil {
		return priv.Public().(ed25519.PublicKey), nil
	}
	key, err := readKey(path, publicKeyLabel, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return ed25519.PublicKey(key), nil
}
