// Package materialize turns the parts of a build into OCI layers: it packs
// file trees into deterministic tars (WriteTar), lays out a venv from wheels
// without running Python (BuildVenvTree), keeps packed layers in a cache
// keyed by what they are made from (Cache), streams model files as
// uncompressed layers (ModelLayer), and gives the layer of a part whose
// digests are known without packing it until its bytes are asked for
// (Lazy, as ko's lazy layer).
package materialize
