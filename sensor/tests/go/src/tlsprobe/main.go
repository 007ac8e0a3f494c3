// A Go program that links crypto/tls, for sensor/tests/go_binary.rs: the test only inspects the built
// binary (it is never run), so the address it would dial does not matter.
package main

import (
	"crypto/tls"
	"fmt"
	"os"
)

func main() {
	conn, err := tls.Dial("tcp", "localhost:1", &tls.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 4)
	n, err := conn.Read(buf)
	fmt.Println(n, err)
}
