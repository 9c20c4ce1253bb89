package realize

import (
	"bufio"
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

// lfsPointerMax is the largest pointer file git-lfs writes or reads.
const lfsPointerMax = 1024

// lfsPointer is a Git LFS pointer: the object's sha256 and size.
type lfsPointer struct {
	OID  string
	Size int64
}

var lfsOID = regexp.MustCompile(`^sha256:([0-9a-f]{64})$`)

// parseLFSPointer reads the pointer format of the Git LFS spec: a version
// line first, then sorted "key value" lines with oid and size; nil when
// data is not a pointer.
func parseLFSPointer(data []byte) *lfsPointer {
	if len(data) == 0 || len(data) >= lfsPointerMax || !bytes.HasSuffix(data, []byte("\n")) {
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var p lfsPointer
	first, prevKey, sized := true, "", false
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || key <= prevKey && !first {
			return nil
		}
		switch {
		case first:
			if key != "version" || (value != "https://git-lfs.github.com/spec/v1" && value != "https://hawser.github.com/spec/v1") {
				return nil
			}
			first = false
			continue
		case key == "oid":
			m := lfsOID.FindStringSubmatch(value)
			if m == nil {
				return nil
			}
			p.OID = m[1]
		case key == "size":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return nil
			}
			p.Size, sized = n, true
		}
		prevKey = key
	}
	if p.OID == "" || !sized || sc.Err() != nil {
		return nil
	}
	return &p
}

// readLFSPointer reads e as an LFS pointer (nil when it is not one).
func readLFSPointer(e treeEntry) (*lfsPointer, error) {
	data, err := readBlob(e, lfsPointerMax)
	if err != nil || data == nil {
		return nil, err
	}
	return parseLFSPointer(data), nil
}
