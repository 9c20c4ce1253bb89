// Package publish writes finished images where a build sends them: a
// registry, an OCI image layout or a docker-loadable tarball, or several of
// them at once.
//
// It follows ko's pkg/publish: one small Publisher interface, one
// implementation per kind of destination, and a multi-publisher that tees
// to all of them. Settings are functional options whose defaults are set in
// one place (makeOptions).
//
// Registry publishing is built for few requests: a destination is probed
// once (ping, credentials, push scope) before any work, and that probed
// transport serves every later request through one remote.Pusher, so a
// first push costs no more requests than remote.Write and a push of an
// image the registry already holds costs two (ping and manifest HEAD; a
// registry with basic auth adds one request, since its ping carries no
// credentials to check).
package publish
