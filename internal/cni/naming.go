package cni

import (
	"crypto/sha256"
	"encoding/hex"
)

// HostVethName is the name of the host side of the attachment's veth: the
// prefix and the first 11 hex digits of sha256(containerID+ifName). With a
// prefix of at most 4 letters it fits the kernel's 15 bytes, and it is the
// same in every plugin run, so DEL and a retried ADD find the link again.
func HostVethName(prefix, containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + ifName))
	return prefix + hex.EncodeToString(sum[:])[:11]
}
