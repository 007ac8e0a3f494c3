// A gRPC client over TLS for the end-to-end tests: grpc-go health checks on one connection, the
// service names given as arguments ("-" for the overall service ""). One line per call: method, status
// code, serving status ("-" when the call failed).
//
// usage: grpc-tls-client [-gate] CA_FILE HOST:PORT SERVICE...
//
// -gate: wait for a line (or EOF) on stdin before dialing, so a test can start the process before
// podtap and let it talk after.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func main() {
	gate := flag.Bool("gate", false, "wait for a line on stdin before dialing")
	flag.Parse()
	if flag.NArg() < 3 {
		fmt.Fprintln(os.Stderr, "usage: grpc-tls-client [-gate] CA_FILE HOST:PORT SERVICE...")
		os.Exit(2)
	}
	creds, err := credentials.NewClientTLSFromFile(flag.Arg(0), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *gate {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, flag.Arg(1), grpc.WithTransportCredentials(creds), grpc.WithBlock())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	for _, service := range flag.Args()[2:] {
		if service == "-" {
			service = ""
		}
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		serving := "-"
		if err == nil {
			serving = resp.GetStatus().String()
		}
		fmt.Printf("/grpc.health.v1.Health/Check %d %s\n", status.Code(err), serving)
	}
}
