package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func runEtcd(_ []string) int {
	// etcdmain.Main reads the program name at index 0 and its flags after it;
	// main has already rewritten os.Args into exactly that shape.
	etcdmain.Main(os.Args)
	return 0
}
