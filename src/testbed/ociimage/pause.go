package main

import "fmt"

// buildPauseImage is the pod sandbox image of the test bed's node: the
// pause binary alone (src/testbed/node/pause), run as the upstream pause
// image runs, as uid 65535. containerd's sandbox_image names it; no
// registry is reachable to pull the upstream one.
func buildPauseImage(binary []byte, ref, arch string) (image, error) {
	l, err := buildLayer([]entry{rootOwned("pause", 0o755, binary)})
	if err != nil {
		return image{}, fmt.Errorf("pause layer: %w", err)
	}
	return assemble([]layer{l}, runtimeConfig{User: "65535:65535", Entrypoint: []string{"/pause"}}, ref, arch)
}
