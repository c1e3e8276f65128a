package main

import (
	"context"

	"k8s.io/component-base/cli"
	kubeproxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// runKubelet starts the node agent of the real node. Its command builds its
// own signal handling from the context it is given.
func runKubelet(_ []string) int {
	return cli.Run(kubelet.NewKubeletCommand(context.Background()))
}

// runKubeProxy starts the Service proxy of the real node (iptables mode).
func runKubeProxy(_ []string) int {
	return cli.Run(kubeproxy.NewProxyCommand())
}
