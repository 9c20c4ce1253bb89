package publish

import (
	"context"
	"errors"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Publisher writes images to one destination.
type Publisher interface {
	// Publish writes img under tag and returns the reference it can be
	// read back by (a digest reference for a registry).
	Publish(ctx context.Context, img v1.Image, tag string) (name.Reference, error)
	// Close finishes the destination (a tarball is written in one go here).
	Close() error
}

// Prober is a Publisher that can check its destination before any work:
// reachable, credentials accepted, push allowed where the registry says.
type Prober interface {
	Probe(ctx context.Context) error
}

// Probe probes p when it is a Prober; other publishers need no check.
func Probe(ctx context.Context, p Publisher) error {
	if pr, ok := p.(Prober); ok {
		return pr.Probe(ctx)
	}
	return nil
}

// Multi publishes to every publisher in turn, as tee(1); the reference
// returned is the last one's.
func Multi(publishers ...Publisher) Publisher {
	return multi(publishers)
}

type multi []Publisher

func (m multi) Publish(ctx context.Context, img v1.Image, tag string) (ref name.Reference, err error) {
	if len(m) == 0 {
		return nil, errors.New("publish.Multi has no publishers")
	}
	for _, p := range m {
		if ref, err = p.Publish(ctx, img, tag); err != nil {
			return nil, err
		}
	}
	return ref, nil
}

// Probe probes every destination, so a dead one fails the build before any
// of them is written.
func (m multi) Probe(ctx context.Context) error {
	for _, p := range m {
		if err := Probe(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (m multi) Close() error {
	var errs []error
	for _, p := range m {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}
