package layers_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
)

// A model layer's digest the layer cache remembers (model-layers/KEY.json,
// trusted while the file's stamp is unchanged) can be wrong: the cache is
// untrusted, and a file's bytes can change without its stamp moving (a
// damaged disk). An OCI layout output reads the layer unchecked and its
// writer refuses bytes that are not the digest's; the error must name the
// model file, as the checked stream did, and the wrong digest must be
// forgotten, so that the next build digests the file again and writes an
// image whose model blob is the file's.
func TestLayoutOutputForgetsAModelDigestItsBytesDoNotHave(t *testing.T) {
	v, file, content := localModelVersion(t, 300_001)
	base := testsupport.SyntheticBase(t)
	cache := testsupport.TempDir(t)
	if _, err := buildErr(t, v, base, cache, nil); err != nil {
		t.Fatal(err)
	}
	if metas := testsupport.ForgeModelLayerDigests(t, cache); len(metas) != 1 {
		t.Fatalf("model layer digests remembered: %v; want one", metas)
	}

	var res *layers.Result
	var err error
	write := func() (string, error) {
		if res, err = buildErr(t, v, base, cache, nil); err != nil {
			return "", err
		}
		dir := testsupport.TempDir(t)
		out, err := layers.ParseLocation("oci:" + dir + ":v1")
		if err != nil {
			t.Fatal(err)
		}
		return dir, layers.Write(context.Background(), res, []layers.Location{out}, "demo", layers.WriteOptions{Log: io.Discard})
	}
	_, err = write()
	if err == nil {
		t.Fatal("a model layer whose bytes are not its digest's was written to the layout without an error")
	}
	if !strings.Contains(err.Error(), file) {
		t.Errorf("layout write of a model layer with a wrong digest: %v; want the error to name %s", err, file)
	}
	dir, err := write()
	if err != nil {
		t.Fatalf("the build after the refused write: %v; want the wrong digest forgotten and the file digested again", err)
	}
	for _, p := range res.Parts {
		if p.Kind != "model" {
			continue
		}
		d, _ := p.Layer.Digest()
		blob, err := os.ReadFile(filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
		if sum := sha256.Sum256(blob); err != nil || hex.EncodeToString(sum[:]) != d.Hex || !bytes.Contains(blob, content) {
			t.Errorf("layout blob %s of the model layer: %d bytes, %v; want the file's layer under its digest", d, len(blob), err)
		}
	}
}
