// Command coredns is the real node's cluster DNS: CoreDNS v1.15.0 with only
// the plugins the node's Corefile names (devcluster/node/services.py:
// errors, health, ready, kubernetes, cache), built as CoreDNS documents for a
// custom set of plugins. The full build links every plugin CoreDNS ships,
// with the cloud providers' SDKs, tracing and GeoIP behind them: twice the
// modules and a third more binary for nothing the node uses, paid on every
// machine's first run.
//
// A module of its own, so that CoreDNS's dependency graph never moves a
// version the control plane's module resolves.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	coremain.Run()
}
