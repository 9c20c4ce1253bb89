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
}

// Compressed is the stream of a blob uploaded to a registry: unchecked
// when the layer offers one (the registry hashes the bytes it receives),
// else hashed on the way unless the layer's stream checks itself.
func (l *trackedLayer) Compressed() (io.ReadCloser, error) {
	open := l.Layer.Compressed
	if us, ok := l.Layer.(UncheckedStreamer); ok {
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
	_, unchecked := l.Layer.(UncheckedStreamer)
	if sv, ok := l.Layer.(SelfVerifying); unchecked || (ok && sv.VerifiesStream()) {
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
