package plainhttp_test

import (
	"testing"

	"github.com/comfy-image/comfy-image/internal/plainhttp"
)

func TestPermittedOnlyLoopbackAndNamedRegistries(t *testing.T) {
	allowed := []string{"registry.lan", "10.0.0.5:5000"}
	for host, want := range map[string]bool{
		"localhost:5000": true, "127.0.0.1:5000": true, "127.0.0.2": true, "[::1]:5000": true,
		"10.255.255.1:5000": false, "192.168.1.2": false, "172.16.0.1:443": false, "reg.localhost:5000": false,
		"registry.lan:5000": true, "registry.lan": true, "10.0.0.5:5000": true, "10.0.0.5:5001": false,
	} {
		if got := plainhttp.Permitted(host, allowed); got != want {
			t.Errorf("Permitted(%q) = %v, want %v", host, got, want)
		}
	}
}
