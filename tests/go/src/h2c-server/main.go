package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// The body of /big: 10 MiB.
var big = []byte(strings.Repeat("x", 10*1024*1024))

// An HTTP server for the end-to-end tests that speaks HTTP/2 without TLS: prior knowledge and the
// HTTP/1.1 `Upgrade: h2c` exchange. /items/... 200, /big 10 MiB, /fail 503, anything else 404.
func main() {
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
	srv := &http.Server{Addr: os.Args[1], Handler: h2c.NewHandler(mux, &http2.Server{})}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
