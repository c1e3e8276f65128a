// Command testapp is the tenant app the real-node tests run: a small HTTP
// server on $PORT (default 8080) that answers /healthz with 200 and any other
// path with its own name, so a test can tell which pod answered through Kong,
// a Service or Consul's health check. Built into a single-binary image by the
// test cluster (devcluster/node/scratch_image.py).
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	name, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "testapp %s %s\n", name, r.URL.Path)
	})
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	// The user and group it runs as: what a test reads back to prove an app's
	// securityContext reached the process.
	log.Printf("testapp listening on :%s uid=%d gid=%d", port, os.Getuid(), os.Getgid())
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
