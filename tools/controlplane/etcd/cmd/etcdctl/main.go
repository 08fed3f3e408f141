// Command etcdctl is upstream's etcdctl, built from the Go module proxy.
package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() {
	ctlv3.MustStart()
}
