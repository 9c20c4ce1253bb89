package testsupport

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// S3Server is an S3-compatible object store (path-style: /bucket/key) that
// accepts a PUT only with a valid AWS SigV4 Authorization header and a GET
// only through a valid presigned URL; both are checked by signing the
// request again with aws-sdk-go-v2's v4 signer and comparing.
type S3Server struct {
	URL    string
	Access string
	Secret string
	mu     sync.Mutex
	// Objects maps "bucket/key" to the bytes stored.
	objects  map[string]s3Object
	rejected []string
}

type s3Object struct {
	data        []byte
	contentType string
}

// NewS3Server starts a store that knows one key pair.
func NewS3Server(t testing.TB, access, secret string) *S3Server {
	t.Helper()
	s := &S3Server{Access: access, Secret: secret, objects: map[string]s3Object{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Object returns what a PUT stored at bucket/key.
func (s *S3Server) Object(bucketKey string) (data []byte, contentType string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[bucketKey]
	return o.data, o.contentType, ok
}

// Keys lists the stored objects as bucket/key.
func (s *S3Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.objects {
		keys = append(keys, k)
	}
	return keys
}

// Rejected lists the requests refused, with why.
func (s *S3Server) Rejected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejected...)
}

func (s *S3Server) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	s.mu.Lock()
	s.rejected = append(s.rejected, r.Method+" "+r.URL.Path+": "+why)
	s.mu.Unlock()
	http.Error(w, "<Error><Code>SignatureDoesNotMatch</Code><Message>"+why+"</Message></Error>", code)
}

func (s *S3Server) serve(w http.ResponseWriter, r *http.Request) {
	bucketKey := strings.TrimPrefix(r.URL.Path, "/")
	if !strings.Contains(bucketKey, "/") {
		s.refuse(w, r, http.StatusBadRequest, "expected /bucket/key")
		return
	}
	switch r.Method {
	case http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			s.refuse(w, r, http.StatusBadRequest, err.Error())
			return
		}
		if why := s.checkHeaderSignature(r, body); why != "" {
			s.refuse(w, r, http.StatusForbidden, why)
			return
		}
		s.mu.Lock()
		s.objects[bucketKey] = s3Object{data: body, contentType: r.Header.Get("Content-Type")}
		s.mu.Unlock()
		w.Header().Set("ETag", `"`+hex.EncodeToString(sha256Sum(body)[:16])+`"`)
	case http.MethodGet:
		if why := s.checkPresigned(r); why != "" {
			s.refuse(w, r, http.StatusForbidden, why)
			return
		}
		o, _, ok := s.Object(bucketKey)
		if !ok {
			http.Error(w, "<Error><Code>NoSuchKey</Code></Error>", http.StatusNotFound)
			return
		}
		w.Write(o)
	default:
		s.refuse(w, r, http.StatusMethodNotAllowed, "method "+r.Method)
	}
}

func sha256Sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

// credential parses "ACCESS/20260101/region/s3/aws4_request".
func (s *S3Server) credential(c string) (region, why string) {
	parts := strings.Split(c, "/")
	if len(parts) != 5 || parts[3] != "s3" || parts[4] != "aws4_request" {
		return "", "malformed credential " + c
	}
	if parts[0] != s.Access {
		return "", "unknown access key " + parts[0]
	}
	return parts[2], ""
}

// checkHeaderSignature signs a copy of r (its signed headers only) with
// the known secret and compares the Authorization headers.
func (s *S3Server) checkHeaderSignature(r *http.Request, body []byte) string {
	auth := r.Header.Get("Authorization")
	fields := map[string]string{}
	for _, f := range strings.Split(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") || fields["Credential"] == "" || fields["Signature"] == "" {
		return "no SigV4 Authorization header"
	}
	region, why := s.credential(fields["Credential"])
	if why != "" {
		return why
	}
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload != hex.EncodeToString(sha256Sum(body)) {
		return "X-Amz-Content-Sha256 does not match the body"
	}
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "bad X-Amz-Date"
	}
	again, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.EscapedPath(), nil)
	again.Host = r.Host
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		switch h {
		case "host":
		case "content-length":
			again.ContentLength = r.ContentLength
		default:
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: s.Access, SecretAccessKey: s.Secret},
		again, payload, "s3", region, when, func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		return err.Error()
	}
	if got := again.Header.Get("Authorization"); got != auth {
		return "signature does not match: want " + got + ", got " + auth
	}
	return ""
}

// checkPresigned presigns the same GET again and compares X-Amz-Signature.
func (s *S3Server) checkPresigned(r *http.Request) string {
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || q.Get("X-Amz-Signature") == "" {
		return "not a presigned URL"
	}
	region, why := s.credential(q.Get("X-Amz-Credential"))
	if why != "" {
		return why
	}
	when, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return "bad X-Amz-Date"
	}
	if q.Get("X-Amz-SignedHeaders") != "host" {
		return "expected X-Amz-SignedHeaders=host"
	}
	again, _ := http.NewRequest(http.MethodGet, "http://"+r.Host+r.URL.EscapedPath()+"?"+url.Values{"X-Amz-Expires": {q.Get("X-Amz-Expires")}}.Encode(), nil)
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: s.Access, SecretAccessKey: s.Secret},
		again, "UNSIGNED-PAYLOAD", "s3", region, when, func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	if err != nil {
		return err.Error()
	}
	u, err := url.Parse(signed)
	if err != nil {
		return err.Error()
	}
	if want := u.Query().Get("X-Amz-Signature"); want != q.Get("X-Amz-Signature") {
		return "presigned signature does not match"
	}
	return ""
}
