package publish

import (
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/comfy-image/comfy-image/internal/progress"
)

// trackedLayer shows a named progress bar for a blob, started when its
// bytes are first read: a blob the registry has (or mounts) shows none.
type trackedLayer struct {
	v1.Layer
	reporter progress.Reporter
	label    string

	mu      sync.Mutex
	tracker progress.Tracker
	// opened counts the streams asked for: one per attempt.
	opened int
}

// Compressed is the stream of a blob uploaded to a registry: unchecked
// when the layer offers one (the registry hashes the bytes it receives),
// else hashed on the way unless the layer's stream checks itself. Only
// the first attempt is unchecked: a retry follows a cut upload or the
// registry's DIGEST_INVALID, and damaged local bytes must then fail as
// damage at once (the checked stream's own error), not be sent again at
// every attempt.
func (l *trackedLayer) Compressed() (io.ReadCloser, error) {
	l.mu.Lock()
	l.opened++
	first := l.opened == 1
	l.mu.Unlock()
	open := l.Layer.Compressed
	us, unchecked := l.Layer.(UncheckedStreamer)
	if unchecked && first {
		open = us.CompressedUnchecked
	}
	rc, err := open()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tracker == nil {
		size, _ := l.Layer.Size()
		l.tracker = l.reporter.Start("upload "+l.label, size)
	}
	l.tracker.SetCurrent(0) // a retry starts over
	if sv, ok := l.Layer.(SelfVerifying); (unchecked && first) || (ok && sv.VerifiesStream()) {
		return trackedReader{rc, l.tracker}, nil
	}
	d, err := l.Layer.Digest()
	if err != nil {
		rc.Close()
		return nil, err
	}
	return trackedReader{newVerifyingReader(rc, d), l.tracker}, nil
}

func (l *trackedLayer) done(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tracker != nil {
		l.tracker.Done(err)
	}
}

type trackedReader struct {
	io.ReadCloser
	t progress.Tracker
}

func (r trackedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.t.Add(int64(n))
	return n, err
}
