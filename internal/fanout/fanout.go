// Package fanout copies one stream to several writers, each written by its
// own goroutine, so that two hashes of the same bytes (a model file's
// sha256 and its layer's digest) cost one read and the time of one hash on
// a machine with two free cores, not the sum of both.
package fanout

import (
	"io"
	"sync"
	"sync/atomic"
)

// Chunk and depth bound what is in flight: depth buffers of chunk bytes
// (4 MiB here), enough to keep the reader ahead of the slowest writer.
const (
	chunk = 1 << 20
	depth = 4
)

// Copy reads src to its end and writes every byte, in order, to each of
// dsts. Each writer runs in its own goroutine and sees the same chunks; a
// chunk's buffer is reused once every writer has written it. It returns
// the bytes read and the first error of the reader or of any writer.
func Copy(src io.Reader, dsts ...io.Writer) (int64, error) {
	if len(dsts) == 1 {
		return io.Copy(dsts[0], src)
	}
	type buf struct {
		b    []byte
		n    int
		refs atomic.Int32
	}
	free := make(chan *buf, depth)
	for range depth {
		free <- &buf{b: make([]byte, chunk)}
	}
	queues := make([]chan *buf, len(dsts))
	errs := make([]error, len(dsts))
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i, w := range dsts {
		queues[i] = make(chan *buf, depth)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range queues[i] {
				if errs[i] == nil {
					if _, err := w.Write(c.b[:c.n]); err != nil {
						errs[i] = err
						stop.Store(true)
					}
				}
				if c.refs.Add(-1) == 0 {
					free <- c
				}
			}
		}()
	}
	var total int64
	var readErr error
	for !stop.Load() {
		c := <-free
		n, err := io.ReadFull(src, c.b)
		if n > 0 {
			c.n = n
			total += int64(n)
			c.refs.Store(int32(len(dsts)))
			for _, q := range queues {
				q <- c
			}
		} else {
			free <- c
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if readErr != nil {
		return total, readErr
	}
	for _, err := range errs {
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
