package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskcast/diskcast/core/config"
)

// TokenFileName is the generated token's file in the state dir.
const TokenFileName = "api-token"

// minToken is the shortest admin token accepted.
const minToken = 16

// LoadToken returns the admin API token: the auth block's token, the
// contents of its token_file, or the token in STATE_DIR/api-token, which
// is generated (32 random bytes, hex, mode 0600) when missing; generated
// reports that, so the caller can print it once. where says which.
func LoadToken(srv config.Server) (token, where string, generated bool, err error) {
	if a := srv.Auth; a != nil && a.Token != "" {
		token, where = strings.TrimSpace(a.Token), "the server's auth block"
	} else if a != nil && a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return "", "", false, fmt.Errorf("api: auth token_file: %w", err)
		}
		token, where = strings.TrimSpace(string(b)), a.TokenFile
	} else {
		path := filepath.Join(srv.StateDir, TokenFileName)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			token, where = strings.TrimSpace(string(b)), path
		case errors.Is(err, os.ErrNotExist):
			buf := make([]byte, 32)
			if _, err := rand.Read(buf); err != nil {
				return "", "", false, fmt.Errorf("api: generate token: %w", err)
			}
			token, where, generated = hex.EncodeToString(buf), path, true
			if err := os.MkdirAll(srv.StateDir, 0o700); err != nil {
				return "", "", false, fmt.Errorf("api: state dir: %w", err)
			}
			if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
				return "", "", false, fmt.Errorf("api: save generated token: %w", err)
			}
		default:
			return "", "", false, fmt.Errorf("api: read token: %w", err)
		}
	}
	if len(token) < minToken || strings.ContainsAny(token, " \t\r\n") {
		return "", "", false, fmt.Errorf("api: the token in %s is %d characters or has spaces; use at least %d characters without spaces (for example: openssl rand -hex 32)",
			where, len(token), minToken)
	}
	return token, where, generated, nil
}
