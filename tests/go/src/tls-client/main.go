// An HTTPS client for the TLS end-to-end tests: Go's net/http over crypto/tls, one connection for all
// URLs, HTTP/1.1 or HTTP/2 (by ALPN). It prints one line per URL: status code, protocol, body bytes.
//
// usage: tls-client [-http2] [-gate] [-sleep D] CA_FILE URL...
//
// -gate: wait for a line (or EOF) on stdin before the first request, so a test can start the process
// before podtap and let it talk after. -sleep: wait that long before the first request.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	useHTTP2 := flag.Bool("http2", false, "negotiate HTTP/2 (else HTTP/1.1 only)")
	gate := flag.Bool("gate", false, "wait for a line on stdin before the first request")
	sleep := flag.Duration("sleep", 0, "wait this long before the first request")
	flag.Parse()
	if flag.NArg() < 2 {
		fmt.Fprintln(os.Stderr, "usage: tls-client [-http2] [-gate] [-sleep D] CA_FILE URL...")
		os.Exit(2)
	}
	pem, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fmt.Fprintln(os.Stderr, "no certificate in", flag.Arg(0))
		os.Exit(1)
	}
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		MaxConnsPerHost: 1,
	}
	if *useHTTP2 {
		transport.ForceAttemptHTTP2 = true
	} else {
		// A non-nil empty map turns HTTP/2 off: ALPN offers http/1.1 only.
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	client := &http.Client{Transport: transport, Timeout: 20 * time.Second}
	if *gate {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	time.Sleep(*sleep)
	for _, url := range flag.Args()[1:] {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%d %s %d\n", resp.StatusCode, resp.Proto, n)
	}
}
