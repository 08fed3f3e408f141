//go:build tools

// Package tools pins etcdutl, whose package main is its module root.
package tools

import _ "go.etcd.io/etcd/etcdutl/v3"
