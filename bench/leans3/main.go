// leans3 serves S3 from memory for bench/backup.py: an S3 server that costs the
// machine little CPU, so that what the bench's two cores measure is the dump
// and its client, not the server (moto spent as much CPU ingesting a dump as
// PostgreSQL spent producing it). Not for tests: it checks no credentials.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on; :0 picks a port")
	flag.Parse()

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("leans3: %v", err)
	}
	// The bench reads the chosen address from stdout's only line; stderr (the
	// HTTP server's own complaints) is left to the bench's.
	fmt.Printf("leans3 listening on %s\n", listener.Addr())

	faker := gofakes3.New(s3mem.New())
	server := &http.Server{Handler: faker.Server()}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		_ = server.Close()
	}()
	if err := server.Serve(listener); err != nil && err != http.ErrServerClosed {
		log.Fatalf("leans3: %v", err)
	}
}
