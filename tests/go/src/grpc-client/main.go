// The gRPC client of the end-to-end tests (grpc-go, Debian's golang-google-grpc-dev, built in GOPATH
// mode). It calls the test server's methods (tests/python/grpc_server.py) on one connection, with raw
// bytes as messages (no generated code), and prints one line per call: method, status code, messages
// received.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// rawCodec sends and receives messages as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

func report(method string, err error, received int) {
	fmt.Printf("%s %d %d\n", method, status.Code(err), received)
}

func unary(ctx context.Context, conn *grpc.ClientConn, method string, msg string) {
	in := []byte(msg)
	var out []byte
	err := conn.Invoke(ctx, method, &in, &out, grpc.ForceCodec(rawCodec{}))
	received := 0
	if err == nil {
		received = 1
	}
	report(method, err, received)
}

// stream sends `send` messages, closes its side, and reads until the server ends the call.
func stream(ctx context.Context, conn *grpc.ClientConn, method string, desc *grpc.StreamDesc, send []string) {
	s, err := conn.NewStream(ctx, desc, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		report(method, err, 0)
		return
	}
	for _, m := range send {
		b := []byte(m)
		if err := s.SendMsg(&b); err != nil {
			report(method, err, 0)
			return
		}
	}
	if err := s.CloseSend(); err != nil {
		report(method, err, 0)
		return
	}
	received := 0
	for {
		var out []byte
		err := s.RecvMsg(&out)
		if err == io.EOF {
			report(method, nil, received)
			return
		}
		if err != nil {
			report(method, err, received)
			return
		}
		received++
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grpc-client HOST:PORT")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, os.Args[1], grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	unary(ctx, conn, "/podtap.Test/Unary", "ping")
	unary(ctx, conn, "/podtap.Test/Unary", "ping again")
	unary(ctx, conn, "/podtap.Test/Fail", "please fail")
	stream(ctx, conn, "/podtap.Test/ServerStream", &grpc.StreamDesc{ServerStreams: true}, []string{"5"})
	stream(ctx, conn, "/podtap.Test/ClientStream", &grpc.StreamDesc{ClientStreams: true}, []string{"a", "b", "c", "d"})
	stream(ctx, conn, "/podtap.Test/Bidi", &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, []string{"x", "y", "z"})
}
