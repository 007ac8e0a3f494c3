// An HTTPS server for the TLS end-to-end tests: Go's net/http over crypto/tls, which offers HTTP/2 and
// HTTP/1.1 by ALPN. /items/... 200 with the protocol in the body, /big 1 MiB, /fail 503, else 404.
//
// usage: tls-server HOST:PORT CERT KEY
package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
)

// The body of /big: 1 MiB, read by the client through many TLS records.
var big = []byte(strings.Repeat("x", 1024*1024))

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: tls-server HOST:PORT CERT KEY")
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/big":
			w.Write(big)
		case strings.HasPrefix(r.URL.Path, "/items/"):
			fmt.Fprintf(w, "item %s\n", r.Proto)
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{Addr: os.Args[1], Handler: mux}
	if err := srv.ListenAndServeTLS(os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
