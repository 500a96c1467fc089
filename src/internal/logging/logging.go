// Package logging builds the plugin's structured logger.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing format ("json" or "text") at level.
func New(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(redact{h})
}

// sensitive names attributes whose values must never reach a log. The code
// never logs them; this catches a future mistake before it ships a secret.
var sensitive = []string{"token", "jwt", "secret", "plaintext", "ciphertext", "dek", "password"}

// redact replaces the value of any attribute named like a secret.
type redact struct{ slog.Handler }

func (r redact) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(scrub(a))
		return true
	})
	return r.Handler.Handle(ctx, out)
}

func (r redact) WithAttrs(as []slog.Attr) slog.Handler {
	for i := range as {
		as[i] = scrub(as[i])
	}
	return redact{r.Handler.WithAttrs(as)}
}

func (r redact) WithGroup(name string) slog.Handler { return redact{r.Handler.WithGroup(name)} }

func scrub(a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, s := range sensitive {
		if strings.Contains(k, s) && !strings.HasSuffix(k, "_file") {
			return slog.String(a.Key, "[redacted]")
		}
	}
	return a
}
