"""gRPC clients of the other servers, adapted to the domain ports."""
