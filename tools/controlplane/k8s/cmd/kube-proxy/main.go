// Command kube-proxy is upstream's kube-proxy, built from the Go module proxy; it serves ClusterIPs on the real node.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
