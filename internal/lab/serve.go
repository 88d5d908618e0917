package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-dev/sluice/internal/netlab"
)

// Serve runs the harness's echo server on every TCP port (all addresses
// of this process's netns) until SIGINT or SIGTERM: the process of every
// lab pod.
func Serve(ports []int, log io.Writer) error {
	tcp := make([]netlab.Port, len(ports))
	for i, p := range ports {
		tcp[i] = netlab.TCP(p)
	}
	s, err := netlab.ListenEcho(netip.Addr{}, tcp)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	fmt.Fprintf(log, "echo server on %v\n", tcp)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(log, "echo server stopping")
	return nil
}
