package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// The restart button's form carries a token, an HMAC of the container name
// under a key: a form of another site cannot know it. Replicas of the
// spawner that share the key (SPAWNER_TOKEN_SECRET or
// SPAWNER_TOKEN_SECRET_FILE) accept each other's tokens; without it the key
// is random and tokens die with the process.

// minTokenSecret is the shortest shared secret accepted, in bytes.
const minTokenSecret = 16

// tokenSecret returns the restart token key from the variable's value or
// the file it names (surrounding white space trimmed), or 32 random bytes
// when neither is set.
func tokenSecret(value, file string) ([]byte, error) {
	switch {
	case value != "" && file != "":
		return nil, fmt.Errorf("SPAWNER_TOKEN_SECRET and SPAWNER_TOKEN_SECRET_FILE: set only one")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("SPAWNER_TOKEN_SECRET_FILE: %w", err)
		}
		key := strings.TrimSpace(string(b))
		if len(key) < minTokenSecret {
			return nil, fmt.Errorf("SPAWNER_TOKEN_SECRET_FILE: %q holds %d bytes, want at least %d", file, len(key), minTokenSecret)
		}
		return []byte(key), nil
	case value != "":
		if len(value) < minTokenSecret {
			return nil, fmt.Errorf("SPAWNER_TOKEN_SECRET: %d bytes, want at least %d", len(value), minTokenSecret)
		}
		return []byte(value), nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating the restart token key: %w", err)
	}
	return key, nil
}

// token is the restart form's CSRF token for name: HMAC-SHA256 of the name
// under the configured key.
func (h *handler) token(name string) string {
	m := hmac.New(sha256.New, h.cfg.CSRFKey)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// sameOrigin reports whether a post comes from the spawner's own pages:
// Sec-Fetch-Site when the browser sends it, else an Origin equal to the
// request's own scheme and host.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if p := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0])); p == "https" || p == "http" {
		scheme = p
	}
	if strings.EqualFold(origin, scheme+"://"+r.Host) {
		return true
	}
	// Behind a proxy that rewrites Host, its X-Forwarded-Host is the host
	// the browser saw. A cross-site form cannot set that header.
	if fh := strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Host"), ",")[0]); fh != "" {
		return strings.EqualFold(origin, scheme+"://"+fh)
	}
	return false
}

// validToken reports whether token is name's, in constant time.
func (h *handler) validToken(name, token string) bool {
	return hmac.Equal([]byte(token), []byte(h.token(name)))
}
