// Package streams holds the small io wrappers the stages share: a reader
// that stops when its context ends, and a writer goroutines can share.
package streams

import (
	"context"
	"io"
	"sync"
)

// WithContext reads r until ctx ends, then gives ctx.Err(): a long read
// (a whole base layer, a model file) stops between two reads instead of
// running to its end after its caller gave up.
func WithContext(ctx context.Context, r io.Reader) io.Reader {
	return ctxReader{ctx, r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Locked lets goroutines share w (a log, a bytes.Buffer): each Write goes
// out whole, never interleaved with another.
func Locked(w io.Writer) io.Writer {
	return &lockedWriter{w: w}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
