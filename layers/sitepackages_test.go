package layers_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/comfy-image/comfy-image/internal/testsupport"
	"github.com/comfy-image/comfy-image/layers"
	"github.com/comfy-image/comfy-image/realize"
)

// torchBase is the synthetic base with a torch-like package 2.6.0 (and
// numpy, which it requires) in its system site packages, as dist-info or
// as Debian's egg-info (a folder with PKG-INFO; numpy as an egg-info file).
func torchBase(t *testing.T, format string) string {
	t.Helper()
	site := "usr/lib/python3/dist-packages/"
	files := map[string]string{
		site + "torch/__init__.py": "__version__ = '2.6.0'\n",
		site + "numpy/__init__.py": "__version__ = '1.26.0'\n",
	}
	switch format {
	case "dist-info":
		files[site+"torch-2.6.0.dist-info/METADATA"] = "Metadata-Version: 2.1\nName: torch\nVersion: 2.6.0\nRequires-Dist: numpy>=1.20\n\nA long description.\n"
		files[site+"torch-2.6.0.dist-info/RECORD"] = "torch/__init__.py,,\n"
		files[site+"numpy-1.26.0.dist-info/METADATA"] = "Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.0\n"
	case "egg-info":
		files[site+"torch-2.6.0.egg-info/PKG-INFO"] = "Metadata-Version: 2.1\nName: torch\nVersion: 2.6.0\n"
		files[site+"torch-2.6.0.egg-info/requires.txt"] = "numpy>=1.20\n"
		files[site+"numpy-1.26.0.egg-info"] = "Metadata-Version: 1.2\nName: numpy\nVersion: 1.26.0\n"
	}
	return testsupport.BaseWithFiles(t, testsupport.SyntheticBase(t), files)
}

// sitePackagesVersion is the demo version with system_site_packages and a
// node that needs torch (need) and numpy; the wheels folder offers torch
// 2.1.0 and 2.6.0 and numpy, so a resolver that ignores the base fetches
// them.
func sitePackagesVersion(t *testing.T, need string) *testsupport.Version {
	t.Helper()
	v := testsupport.NewVersion(t)
	for _, w := range []testsupport.Wheel{{Name: "torch", Version: "2.1.0"}, {Name: "torch", Version: "2.6.0"}, {Name: "numpy", Version: "1.26.0"}} {
		testsupport.BuildWheel(t, v.Wheels, w)
	}
	v.Nodes["ComfyUI-GGUF"].Commit("needs torch", map[string]string{"requirements.txt": "beta>=1.0\n" + need + "\nnumpy\n"})
	v.WriteSpec(t, `"python": {"system_site_packages": true},`)
	return v
}

func TestSystemSitePackagesVenvHoldsOnlyWhatTheBaseLacks(t *testing.T) {
	for _, format := range []string{"dist-info", "egg-info"} {
		t.Run(format, func(t *testing.T) {
			v := sitePackagesVersion(t, "torch>=2.0")
			res := build(t, v, torchBase(t, format), testsupport.TempDir(t), nil)
			fs := files(t, res.App)
			venv := "opt/comfy/.venv/"
			for p := range fs {
				rel := strings.TrimPrefix(p, venv+"lib/python3.11/site-packages/")
				if strings.HasPrefix(p, venv) && (strings.HasPrefix(rel, "torch") || strings.HasPrefix(rel, "numpy")) {
					t.Errorf("venv layer holds %s, which the base provides", p)
				}
			}
			for _, want := range []string{"alpha/__init__.py", "beta-1.2.dist-info/METADATA", "gamma/__init__.py"} {
				if _, ok := fs[venv+"lib/python3.11/site-packages/"+want]; !ok {
					t.Errorf("venv lacks %s, which the base does not have", want)
				}
			}
			if !strings.Contains(fs[venv+"pyvenv.cfg"], "include-system-site-packages = true") {
				t.Errorf("pyvenv.cfg %q", fs[venv+"pyvenv.cfg"])
			}
			var names []string
			for _, p := range res.Lock.Python.ImagePackages {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != "alpha,beta,gamma" {
				t.Errorf("locked image packages %v, want alpha,beta,gamma", names)
			}
		})
	}
}

func TestNodeNeedingAnotherTorchThanTheBaseFailsNamingIt(t *testing.T) {
	v := sitePackagesVersion(t, "torch==2.1.0")
	o := layers.BuildOptions{Options: realize.Options{CacheDir: testsupport.TempDir(t)}, Base: torchBase(t, "egg-info"), WheelsDir: v.Wheels,
		LookupEnv: func(string) (string, bool) { return "", false }, Getenv: func(string) string { return "" }}
	o.Models = "skip"
	_, err := layers.Build(context.Background(), load(t, v), o)
	if err == nil {
		t.Fatal("build took torch 2.1.0 for a base with torch 2.6.0")
	}
	if !strings.Contains(err.Error(), "node gguf requires torch==2.1.0") || !strings.Contains(err.Error(), "the base image has torch 2.6.0") {
		t.Fatalf("error does not name the node and both torches: %v", err)
	}
	t.Logf("the error: %v", err)
}

func TestVenvGetsPipFromTheBasesWheel(t *testing.T) {
	v := testsupport.NewVersion(t)
	wheel := testsupport.BuildWheel(t, testsupport.TempDir(t), testsupport.Wheel{Name: "pip", Version: "23.0.1", Scripts: map[string]string{"pip": "pip:main"}})
	data, err := os.ReadFile(wheel)
	if err != nil {
		t.Fatal(err)
	}
	base := testsupport.BaseWithFiles(t, testsupport.SyntheticBase(t), map[string]string{
		"usr/share/python-wheels/pip-23.0.1-py3-none-any.whl": string(data)})
	fs := files(t, build(t, v, base, testsupport.TempDir(t), nil).App)
	for _, want := range []string{"lib/python3.11/site-packages/pip/__init__.py", "lib/python3.11/site-packages/pip-23.0.1.dist-info/METADATA", "bin/pip"} {
		if _, ok := fs["opt/comfy/.venv/"+want]; !ok {
			t.Errorf("venv lacks %s from the base's pip wheel", want)
		}
	}
}

func TestReadBaseFindsThePackagesItsPythonSees(t *testing.T) {
	loc := testsupport.BaseWithFiles(t, testsupport.SyntheticBase(t), map[string]string{
		// pip's folder comes before Debian's on /usr/bin/python3.11's path.
		"usr/local/lib/python3.11/dist-packages/torch-2.6.0+cu124.dist-info/METADATA": "Name: torch\nVersion: 2.6.0+cu124\n",
		"usr/lib/python3/dist-packages/torch-2.5.0.egg-info/PKG-INFO":                 "Name: torch\nVersion: 2.5.0\n",
		"usr/lib/python3/dist-packages/Pillow-9.4.0.egg-info":                         "Name: Pillow\nVersion: 9.4.0\n",
		// Another Python's folder, and a name that is not one.
		"usr/lib/python3.10/dist-packages/xformers-0.0.28.dist-info/METADATA": "Name: xformers\nVersion: 0.0.28\n",
		"usr/lib/python3/dist-packages/evil-1.0.dist-info/METADATA":           "Name: ../../evil\nVersion: 1.0\n",
		"usr/share/python-wheels/pip-23.0.1-py3-none-any.whl":                 "not really a wheel",
	})
	info, err := layers.ReadBase(context.Background(), testsupport.SyntheticBaseImage(t, loc), testsupport.TempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range info.Packages {
		got = append(got, p.Name+"=="+p.Version)
	}
	if strings.Join(got, ",") != "pillow==9.4.0,torch==2.6.0+cu124" {
		t.Errorf("base packages %v", got)
	}
	if info.Torch["torch"] != "2.6.0+cu124" || info.Torch["xformers"] != "" {
		t.Errorf("torch family %v", info.Torch)
	}
	if info.PipWheel == nil || info.PipWheel.Version != "23.0.1" {
		t.Errorf("pip wheel %+v", info.PipWheel)
	} else if data, _ := os.ReadFile(info.PipWheel.File); string(data) != "not really a wheel" {
		t.Errorf("cached pip wheel holds %q", data)
	}
}
