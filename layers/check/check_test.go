package check_test

import (
	"reflect"
	"testing"

	"github.com/comfy-image/comfy-image/layers/check"
)

// A ComfyUI start log (as nodes.py writes it) with one node whose import
// failed on a missing shared library and one without a reason line.
const startLog = `Traceback (most recent call last):
  File "/opt/comfy/ComfyUI/nodes.py", line 2131, in load_custom_node
    module_spec.loader.exec_module(module)
  File "/opt/comfy/ComfyUI/custom_nodes/ComfyUI-KJNodes/__init__.py", line 1, in <module>
    import cv2
ImportError: libGL.so.1: cannot open shared object file: No such file or directory

Cannot import /opt/comfy/ComfyUI/custom_nodes/ComfyUI-KJNodes module for custom nodes: libGL.so.1: cannot open shared object file: No such file or directory

Import times for custom nodes:
   0.0 seconds: /opt/comfy/ComfyUI/custom_nodes/websocket_image_save.py
   0.0 seconds (IMPORT FAILED): /opt/comfy/ComfyUI/custom_nodes/broken
   0.1 seconds: /opt/comfy/ComfyUI/custom_nodes/gguf
   0.2 seconds (IMPORT FAILED): /opt/comfy/ComfyUI/custom_nodes/ComfyUI-KJNodes

Starting server
`

func TestFailedNodesFromComfyLog(t *testing.T) {
	got := check.FailedNodes(startLog)
	want := []check.FailedNode{
		{Name: "ComfyUI-KJNodes", Path: "/opt/comfy/ComfyUI/custom_nodes/ComfyUI-KJNodes", Error: "libGL.so.1: cannot open shared object file: No such file or directory"},
		{Name: "broken", Path: "/opt/comfy/ComfyUI/custom_nodes/broken", Error: "see the log above its IMPORT FAILED line"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("failed nodes\n got %+v\nwant %+v", got, want)
	}
	if n := check.FailedNodes("Import times for custom nodes:\n   0.1 seconds: /opt/comfy/ComfyUI/custom_nodes/gguf\n"); len(n) != 0 {
		t.Errorf("a clean start reported %+v", n)
	}
}
