package resolve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/comfy-image/comfy-image/versions"
)

// InFile resolves spec against the lock kept in file, the one way realize
// and build treat the lock. Locked or offline, the recorded lock is the
// truth: it must exist and cover the spec, and nothing is written. Online,
// every ref is resolved afresh (Resolve, keeping what the old lock pinned
// that is still current), each change is logged as "lock: <change>", and
// the lock is written when it changed; a damaged lock is logged and
// resolved again.
func InFile(ctx context.Context, spec *versions.Spec, file string, opts ...Option) (*versions.Lock, Changes, error) {
	o := makeOptions(opts)
	if o.locked || o.offline {
		flag := "--locked"
		if !o.locked {
			flag = "--offline"
		}
		l, err := ReadCovering(spec, file, o.skipModels)
		if err != nil {
			return nil, Changes{}, fmt.Errorf("%s: %w", flag, err)
		}
		return l, Changes{}, nil
	}
	old, err := versions.ReadLock(file)
	if err != nil && !errors.Is(err, versions.ErrNoLock) {
		fmt.Fprintf(o.log, "lock: %v; resolving again\n", err)
	}
	fresh, changes, err := Resolve(ctx, spec, old, append(opts, WithLockName(file))...)
	if err != nil {
		return nil, Changes{}, err
	}
	for _, line := range changes.Lines {
		fmt.Fprintln(o.log, "lock: "+line)
	}
	return fresh, changes, WriteIfChanged(file, old, fresh)
}

// ReadCovering reads the lock in file and checks that it covers spec (its
// models too unless skipModels); the lock returned holds the spec's
// entries only.
func ReadCovering(spec *versions.Spec, file string, skipModels bool) (*versions.Lock, error) {
	l, err := versions.ReadLock(file)
	if err != nil {
		return nil, err
	}
	if err := l.Covers(spec, file, skipModels); err != nil {
		return nil, err
	}
	return l.ForSpec(spec), nil
}

// WriteIfChanged writes l to file (atomically) unless old holds the same
// content, so an unchanged rerun writes nothing and a committed lock stays
// untouched.
func WriteIfChanged(file string, old, l *versions.Lock) error {
	_, err := WriteChanged(file, old, l)
	return err
}

// WriteChanged is WriteIfChanged telling whether it wrote the file.
func WriteChanged(file string, old, l *versions.Lock) (wrote bool, err error) {
	if old != nil {
		a, _ := json.Marshal(old)
		b, _ := json.Marshal(l)
		if bytes.Equal(a, b) {
			return false, nil
		}
	}
	return true, versions.WriteLock(file, l)
}
