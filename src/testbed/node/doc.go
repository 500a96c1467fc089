// Package node holds the two small programs a real node of the test bed
// needs besides the kubelet and containerd: the pod sandbox's pause process
// and a CNI plugin. Both use the standard library only.
package node
