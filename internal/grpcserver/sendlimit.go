package grpcserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/slammesh/slammesh/internal/rpcerr"
)

// ReasonMessageTooLarge is the ErrorInfo reason of a reply larger than the
// server's send limit (Config.MaxMessageBytes).
const ReasonMessageTooLarge = "MESSAGE_TOO_LARGE"

// sendLimitUnary fails a call whose reply would exceed limit bytes with
// RESOURCE_EXHAUSTED before gRPC tries to send it. gRPC refuses such a send
// itself, but after the handler and the interceptors have returned, so the
// call log (and the span's handler view) would say OK for a call the client
// saw fail; checked here, inside the logging interceptor, the logged status
// is the one the client gets, and the message says what to do instead.
func sendLimitUnary(limit int) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return resp, err
		}
		if err := checkSize(resp, limit, info.FullMethod); err != nil {
			return nil, err
		}
		return resp, nil
	}
}

// sendLimitStream applies the same check to each message a streaming
// handler sends; the handler sees the error from SendMsg and returns it, so
// the call is logged with it.
func sendLimitStream(limit int) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &limitedStream{ServerStream: ss, limit: limit, method: info.FullMethod})
	}
}

type limitedStream struct {
	grpc.ServerStream
	limit  int
	method string
}

func (s *limitedStream) SendMsg(m any) error {
	if err := checkSize(m, s.limit, s.method); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

// checkSize returns RESOURCE_EXHAUSTED (MESSAGE_TOO_LARGE) when m, a proto
// message, encodes to more than limit bytes.
func checkSize(m any, limit int, method string) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	if n := proto.Size(pm); n > limit {
		return rpcerr.New(codes.ResourceExhausted, ReasonMessageTooLarge,
			fmt.Sprintf("%s reply of %d bytes exceeds the server's %d-byte send limit; use the streaming variant (e.g. MappingService.StreamMap) or ask for less",
				method, n, limit),
			"reply_bytes", fmt.Sprint(n), "limit_bytes", fmt.Sprint(limit))
	}
	return nil
}
