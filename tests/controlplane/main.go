// Command controlplane is one multi-call binary holding every process the
// StackForge tests need for a real Kubernetes API: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok and kubectl; kubelet and
// kube-proxy for the real node; plus helm (template, lint) for the chart tests.
//
// It dispatches on its first argument ("controlplane etcd --name x ...") or,
// when invoked through a symlink, on the basename of argv[0]. Only the
// selected component is constructed, because several Kubernetes commands set
// up a process-wide signal context and panic when that happens twice.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// component starts one program; args are the program's own arguments
// without the program name.
type component func(args []string) int

var components = map[string]component{
	"etcd":                    runEtcd,
	"kube-apiserver":          runAPIServer,
	"kube-controller-manager": runControllerManager,
	"kube-scheduler":          runScheduler,
	"kwok":                    runKwok,
	"kubelet":                 runKubelet,
	"kube-proxy":              runKubeProxy,
	"kubectl":                 runKubectl,
	"helm":                    runHelm,
	"stages":                  printStages,
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := components[name]; !ok {
		if len(args) == 0 {
			usage()
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	run, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "controlplane: unknown component %q\n", name)
		usage()
		os.Exit(2)
	}
	// Cobra-based commands and kwok read os.Args themselves, so make the
	// process look exactly as if the component had been started directly.
	os.Args = append([]string{name}, args...)
	os.Exit(run(args))
}

func usage() {
	names := make([]string, 0, len(components))
	for n := range components {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: controlplane {%s} [args...]\n", strings.Join(names, "|"))
}
