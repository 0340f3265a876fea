//go:build unix && !linux

package conn

func yieldCPU() {}
