// An independent reading of a Go executable's function table for sensor/tests/go_binary.rs: Go's own
// debug/elf and debug/gosym (the standard library's pclntab reader) print, for each function name given,
// "name entry end" in hex, or "name missing". It works on stripped binaries, where `go tool objdump`
// refuses ("no symbol section").
package main

import (
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: pclnoracle BINARY FUNCTION...")
		os.Exit(2)
	}
	file, err := elf.Open(os.Args[1])
	if err != nil {
		fail(err)
	}
	text := file.Section(".text")
	pcln := file.Section(".gopclntab")
	if pcln == nil {
		pcln = file.Section(".data.rel.ro.gopclntab")
	}
	if text == nil || pcln == nil {
		fail(fmt.Errorf("no .text or .gopclntab section"))
	}
	data, err := pcln.Data()
	if err != nil {
		fail(err)
	}
	// go1.18+ tables are relative to runtime.text, which is the start of .text for internally linked
	// binaries (gosym takes it from the caller rather than from the table header).
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		fail(err)
	}
	for _, name := range os.Args[2:] {
		if fn := table.LookupFunc(name); fn != nil {
			fmt.Printf("%s %x %x\n", name, fn.Entry, fn.End)
		} else {
			fmt.Printf("%s missing\n", name)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
