package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// baseTree writes a small root filesystem with a file, an executable, a
// setuid program, a symlink, a hard link and a FIFO.
func baseTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(testsupport.TempDir(t), "rootfs")
	for _, d := range []string{"usr/bin", "etc", "dev"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{"etc/os-release": 0o644, "usr/bin/python3.11": 0o755, "usr/bin/su": 0o755 | os.ModeSetuid}
	for name, mode := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range []error{
		os.Symlink("python3.11", filepath.Join(dir, "usr/bin/python3")),
		os.Link(filepath.Join(dir, "usr/bin/python3.11"), filepath.Join(dir, "usr/bin/python3.11-hard")),
		syscall.Mkfifo(filepath.Join(dir, "dev/initctl"), 0o600),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(dir, "etc/os-release"), 1000, 1001); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBaseCommandPacksARootfs: `comfy-image base` writes a tagged OCI
// layout that go-containerregistry reads back, the same digest on a second
// run; umoci unpacks it to the same files, and skopeo reads its config.
func TestBaseCommandPacksARootfs(t *testing.T) {
	dir := baseTree(t)
	work := testsupport.TempDir(t)
	out := filepath.Join(work, "base")
	res := testsupport.Run(t, work, nil, "base", "--rootfs", dir, "--output", "oci:"+out+":bookworm", "--env", "LANG=C.UTF-8")
	if res.Code != 0 {
		t.Fatalf("base: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "/dev/initctl") || !strings.Contains(res.Stderr, "3 files") || !strings.Contains(res.Stderr, "1 hard link into") {
		t.Errorf("stderr does not say what was packed and left out:\n%s", res.Stderr)
	}
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "bookworm" {
		t.Fatalf("index %+v, %v", m, err)
	}
	img, err := p.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if want := "oci:" + out + ":bookworm " + m.Manifests[0].Digest.String(); strings.TrimSpace(res.Stdout) != want {
		t.Errorf("stdout %q, want %q", res.Stdout, want)
	}
	cf, _ := img.ConfigFile()
	if cf.OS != "linux" || strings.Join(cf.Config.Env, " ") != "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8" {
		t.Errorf("config os %s env %v", cf.OS, cf.Config.Env)
	}
	again := testsupport.Run(t, work, nil, "base", "--rootfs", dir, "--output", "oci:"+filepath.Join(work, "again")+":x", "--env", "LANG=C.UTF-8")
	if again.Code != 0 || !strings.HasSuffix(strings.TrimSpace(again.Stdout), m.Manifests[0].Digest.String()) {
		t.Errorf("a second pack: exit %d, %q; want digest %s", again.Code, again.Stdout, m.Manifests[0].Digest)
	}

	// A docker-loadable tarball of the same image.
	tarFile := filepath.Join(work, "base.tar")
	if res := testsupport.Run(t, work, nil, "base", "--rootfs", dir, "--output", "tar:"+tarFile, "--env", "LANG=C.UTF-8"); res.Code != 0 {
		t.Fatalf("base tar: exit %d\n%s", res.Code, res.Stderr)
	}
	fromTar, err := tarball.ImageFromPath(tarFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()
	if got, _ := fromTar.ConfigName(); got != want {
		t.Errorf("tar: config %s, want %s", got, want)
	}

	if _, err := exec.LookPath("umoci"); err == nil {
		bundle := filepath.Join(work, "bundle")
		if out, err := exec.Command("umoci", "unpack", "--image", out+":bookworm", bundle).CombinedOutput(); err != nil {
			t.Fatalf("umoci unpack: %v\n%s", err, out)
		}
		rfs := filepath.Join(bundle, "rootfs")
		if data, _ := os.ReadFile(filepath.Join(rfs, "etc/os-release")); string(data) != "etc/os-release\n" {
			t.Errorf("unpacked etc/os-release: %q", data)
		}
		if link, _ := os.Readlink(filepath.Join(rfs, "usr/bin/python3")); link != "python3.11" {
			t.Errorf("unpacked usr/bin/python3 -> %q", link)
		}
		a, _ := os.Stat(filepath.Join(rfs, "usr/bin/python3.11"))
		b, _ := os.Stat(filepath.Join(rfs, "usr/bin/python3.11-hard"))
		if a == nil || b == nil || !os.SameFile(a, b) || a.Mode().Perm() != 0o755 {
			t.Errorf("unpacked hard link: %v %v", a, b)
		}
		if su, _ := os.Stat(filepath.Join(rfs, "usr/bin/su")); su == nil || su.Mode()&os.ModeSetuid == 0 {
			t.Errorf("unpacked usr/bin/su lost setuid: %v", su)
		}
		if os.Geteuid() == 0 {
			if fi, _ := os.Stat(filepath.Join(rfs, "etc/os-release")); fi == nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 || fi.Sys().(*syscall.Stat_t).Gid != 1001 {
				t.Errorf("unpacked etc/os-release owner: %v", fi)
			}
		}
		if _, err := os.Lstat(filepath.Join(rfs, "dev/initctl")); !os.IsNotExist(err) {
			t.Errorf("the FIFO was packed: %v", err)
		}
	} else {
		t.Log("umoci is not installed: unpacking by umoci not checked")
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		raw, err := exec.Command("skopeo", "inspect", "oci:"+out+":bookworm").Output()
		if err != nil {
			t.Fatalf("skopeo inspect: %v", err)
		}
		var info struct {
			Architecture string
			Layers       []string
			Env          []string
		}
		if err := json.Unmarshal(raw, &info); err != nil || len(info.Layers) != 1 || info.Architecture != cf.Architecture || len(info.Env) != 2 {
			t.Errorf("skopeo inspect: %v\n%s", err, raw)
		}
	} else {
		t.Log("skopeo is not installed: skopeo inspect not checked")
	}
}

func TestBaseCommandUsage(t *testing.T) {
	dir := baseTree(t)
	work := testsupport.TempDir(t)
	file := filepath.Join(work, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"base", "--output", "oci:" + work + "/o"}, "--rootfs DIR is required"},
		{[]string{"base", "--rootfs", file, "--output", "oci:" + work + "/o"}, "not a folder"},
		{[]string{"base", "--rootfs", dir}, "--output is required"},
		{[]string{"base", "--rootfs", dir, "--output", work + "/o"}, "expected oci:DIR[:TAG] or tar:FILE"},
		{[]string{"base", "--rootfs", dir, "--output", "oci:" + file}, "is a file"},
		{[]string{"base", "--rootfs", dir, "--output", "oci:" + work + "/o", "--env", "=x"}, "expected KEY=VALUE"},
		{[]string{"base", "--rootfs", dir, "--output", "oci:" + work + "/o", "--arch", "x86_64"}, "expected amd64 or arm64"},
	} {
		res := testsupport.Run(t, work, nil, tc.args...)
		if res.Code != 2 || !strings.Contains(res.Stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, res.Code, res.Stderr, tc.want)
		}
	}
	// base has no --push: its message must not offer one.
	if res := testsupport.Run(t, work, nil, "base", "--rootfs", dir, "--output", work+"/x.tar"); strings.Contains(res.Stderr, "--push") {
		t.Errorf("base --output x.tar offers a --push it does not have:\n%s", res.Stderr)
	}
	if left, _ := os.ReadDir(work); len(left) != 1 {
		t.Errorf("a refused command wrote %v", left)
	}
}
