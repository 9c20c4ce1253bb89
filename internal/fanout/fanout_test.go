package fanout

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
)

// Every writer sees every byte in order, whatever the size against the
// chunk size (empty, short, exact multiples, a ragged end).
func TestCopyGivesEveryWriterTheSameBytes(t *testing.T) {
	for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, depth*chunk + 12345, 3*depth*chunk + 7} {
		data := make([]byte, size)
		rand.Read(data)
		var a, b bytes.Buffer
		h := sha256.New()
		n, err := Copy(bytes.NewReader(data), &a, h, &b)
		if err != nil || n != int64(size) {
			t.Fatalf("size %d: Copy = %d, %v", size, n, err)
		}
		if !bytes.Equal(a.Bytes(), data) || !bytes.Equal(b.Bytes(), data) {
			t.Fatalf("size %d: a writer got other bytes", size)
		}
		if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("size %d: the hash writer saw other bytes", size)
		}
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, f.err
	}
	return len(p), nil
}

// A writer's error ends the copy and is returned; a reader's too.
func TestCopyReturnsTheFirstError(t *testing.T) {
	boom := errors.New("disk full")
	data := make([]byte, 10*chunk)
	if _, err := Copy(bytes.NewReader(data), io.Discard, &failAfter{n: 2 * chunk, err: boom}); !errors.Is(err, boom) {
		t.Fatalf("writer error: got %v", err)
	}
	cut := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(data[:3*chunk+5]), &errReader{cut})
	if n, err := Copy(r, io.Discard, sha256.New()); !errors.Is(err, cut) || n != 3*chunk+5 {
		t.Fatalf("reader error: got %d, %v", n, err)
	}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// BenchmarkTwoHashes is the model read of a build: a file's sha256 and
// its layer's digest over the same bytes, against one hash alone.
func BenchmarkTwoHashes(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	b.Run("one", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			Copy(bytes.NewReader(data), sha256.New())
		}
	})
	b.Run("two-fanout", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			Copy(bytes.NewReader(data), sha256.New(), sha256.New())
		}
	})
	b.Run("two-serial", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			io.Copy(io.MultiWriter(sha256.New(), sha256.New()), bytes.NewReader(data))
		}
	})
}
