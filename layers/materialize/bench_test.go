package materialize_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/comfy-image/comfy-image/layers/materialize"
)

// benchEntries is 64 MiB of mixed content: half compressible text, half noise.
func benchEntries() []materialize.Entry {
	text := bytes.Repeat([]byte("import torch\nclass Node:\n    def run(self, x):\n        return x * 2\n"), 500_000)[:32<<20]
	noise := make([]byte, 32<<20)
	x := uint64(88172645463325252)
	for i := range noise {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		noise[i] = byte(x)
	}
	return []materialize.Entry{materialize.BytesEntry("opt/comfy/text.py", 0o644, text), materialize.BytesEntry("opt/comfy/weights.bin", 0o644, noise)}
}

// BenchmarkPackLayer packs the same layer with our parallel gzip (pgzip,
// 1 MiB blocks, all cores) and with the standard library's single-stream
// gzip at the same level, and reports both rates and their ratio.
func BenchmarkPackLayer(b *testing.B) {
	entries := benchEntries()
	var size int64
	for _, e := range entries {
		size += e.Size
	}
	var ours, peer time.Duration
	for i := 0; i < b.N; i++ {
		c := materialize.Cache{Dir: b.TempDir()}
		start := time.Now()
		if _, _, err := c.Build(context.Background(), materialize.Key("bench"), materialize.Gzip, materialize.TarOptions{ModTime: time.Unix(0, 0)},
			func() ([]materialize.Entry, error) { return entries, nil }); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		start = time.Now()
		zw, _ := gzip.NewWriterLevel(io.Discard, 6)
		if err := materialize.WriteTar(zw, entries, materialize.TarOptions{ModTime: time.Unix(0, 0)}); err != nil {
			b.Fatal(err)
		}
		zw.Close()
		peer += time.Since(start)
	}
	mb := float64(size) / (1 << 20) * float64(b.N)
	b.ReportMetric(mb/ours.Seconds(), "MB/s-pgzip")
	b.ReportMetric(mb/peer.Seconds(), "MB/s-stdlib-gzip")
	b.ReportMetric(peer.Seconds()/ours.Seconds(), "speedup")
	b.Logf("GOMAXPROCS=%d", runtime.GOMAXPROCS(0))
}

// BenchmarkModelLayerMemory writes a models image with a 16 MiB and with a
// 512 MiB model file to an OCI layout and reports the peak heap of each:
// streaming keeps it flat whatever the file size.
func BenchmarkModelLayerMemory(b *testing.B) {
	peaks := map[int64]uint64{}
	for _, size := range []int64{16 << 20, 512 << 20} {
		dir := b.TempDir()
		file := filepath.Join(dir, "model.bin")
		f, _ := os.Create(file)
		f.Truncate(size) // sparse: reads as zeros, costs no disk
		f.Close()
		for i := 0; i < b.N; i++ {
			runtime.GC()
			peak := watchHeap()
			l, err := materialize.NewModelLayer(dir, file, "checkpoints/model.bin", "0", time.Unix(0, 0))
			if err != nil {
				b.Fatal(err)
			}
			img, _ := mutate.AppendLayers(empty.Image, l)
			p, _ := layout.Write(filepath.Join(dir, "oci"), empty.Index)
			if err := p.AppendImage(img); err != nil {
				b.Fatal(err)
			}
			peaks[size] = max(peaks[size], peak())
			os.RemoveAll(filepath.Join(dir, "oci"))
			os.RemoveAll(filepath.Join(dir, "model-layers"))
		}
	}
	b.ReportMetric(float64(peaks[16<<20])/(1<<20), "MiB-heap-16MiB-model")
	b.ReportMetric(float64(peaks[512<<20])/(1<<20), "MiB-heap-512MiB-model")
	b.ReportMetric(float64(peaks[512<<20])/float64(peaks[16<<20]), "heap-ratio")
}

// watchHeap samples the heap until the returned func is called, which
// returns the peak in bytes.
func watchHeap() func() uint64 {
	var mu sync.Mutex
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
