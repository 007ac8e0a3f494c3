package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
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
