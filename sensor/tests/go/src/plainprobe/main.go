// A Go program without crypto/tls, for sensor/tests/go_binary.rs (inspect must say "nothing to hook").
package main

import "fmt"

func main() {
	fmt.Println("no TLS here")
}
