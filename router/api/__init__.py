"""The gRPC boundary: servicers, proto <-> core conversion, status codes."""
