package packet

import "testing"

func TestProbeFrames(t *testing.T) {
	syn := Probe{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 40000, DstPort: 80}
	for _, tc := range []struct {
		name  string
		p     Probe
		check func(t *testing.T, f *Frame)
	}{
		{"TCP SYN", syn, func(t *testing.T, f *Frame) {
			if f.TCPFlags != TCPSyn || f.SrcPort != 40000 || f.DstPort != 80 {
				t.Errorf("%+v", f)
			}
		}},
		{"TCP SYN-ACK", Probe{Src: v4b, Dst: v4a, Proto: ProtoTCP, SrcPort: 80, DstPort: 40000, Reply: true}, func(t *testing.T, f *Frame) {
			if f.TCPFlags != TCPSyn|TCPAck {
				t.Errorf("flags %#x", f.TCPFlags)
			}
		}},
		{"SCTP INIT-ACK", Probe{Src: v6a, Dst: v6b, Proto: ProtoSCTP, SrcPort: 9, DstPort: 9, Reply: true}, func(t *testing.T, f *Frame) {
			if f.Payload[0] != 2 {
				t.Errorf("chunk type %d", f.Payload[0])
			}
		}},
		{"ICMPv6 echo request from ProtoICMP", Probe{Src: v6a, Dst: v6b, Proto: ProtoICMP, SrcPort: 7}, func(t *testing.T, f *Frame) {
			if f.Proto != ProtoICMPv6 || f.ICMPType != icmpv6EchoRequest || f.ICMPRest>>16 != 7 {
				t.Errorf("%+v", f)
			}
		}},
		{"ICMP echo reply carries the identifier in DstPort", Probe{Src: v4b, Dst: v4a, Proto: ProtoICMPv6, DstPort: 7, Reply: true}, func(t *testing.T, f *Frame) {
			if f.Proto != ProtoICMP || f.ICMPType != icmpEchoReply || f.ICMPRest>>16 != 7 {
				t.Errorf("%+v", f)
			}
		}},
		{"fragmentation needed quotes the packet", Probe{Src: v4b, Dst: v4a, Proto: ProtoICMP, Quote: &syn}, func(t *testing.T, f *Frame) {
			if f.ICMPType != icmpDestUnreachable || f.ICMPCode != icmpFragmentationNeeded || f.ICMPRest != probeMTU {
				t.Errorf("%+v", f)
			}
			if len(f.Payload) != IPv4Len+8 || f.Payload[9] != ProtoTCP {
				t.Errorf("quote %x", f.Payload)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame, err := tc.p.Frame()
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(frame)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.VerifyChecksums(); err != nil {
				t.Error(err)
			}
			tc.check(t, f)
		})
	}
}

func TestProbeRejects(t *testing.T) {
	syn := Probe{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2}
	six := Probe{Src: v6a, Dst: v6b, Proto: ProtoUDP}
	for _, tc := range []struct {
		name string
		p    Probe
	}{
		{"no protocol", Probe{Src: v4a, Dst: v4b}},
		{"error that isn't ICMP", Probe{Src: v4b, Dst: v4a, Proto: ProtoUDP, Quote: &syn}},
		{"error about an error", Probe{Src: v4a, Dst: v4b, Proto: ProtoICMP, Quote: &Probe{Src: v4b, Dst: v4a, Proto: ProtoICMP, Quote: &syn}}},
		{"error quoting the other family", Probe{Src: v4a, Dst: v4b, Proto: ProtoICMP, Quote: &six}},
	} {
		if _, err := tc.p.Frame(); err == nil {
			t.Errorf("%s: built", tc.name)
		}
	}
}
