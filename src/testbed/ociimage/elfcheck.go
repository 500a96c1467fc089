package main

import (
	"bytes"
	"debug/elf"
	"fmt"
)

// elfMachines maps the GOARCHes the release builds for to their ELF machine.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// checkStaticBinary refuses a binary the image could not run: distroless
// static has no libc and no dynamic loader, so a binary that asks for an
// interpreter fails to start with a bare "no such file or directory", and
// one of another architecture fails with "exec format error".
func checkStaticBinary(binary []byte, arch string) error {
	want, known := elfMachines[arch]
	if !known {
		return fmt.Errorf("architecture %q: want one of amd64, arm64", arch)
	}
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("built for %s, the image is %s (%s)", f.Machine, arch, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked (build it with CGO_ENABLED=0)")
		}
	}
	return nil
}
