"""gRPC servers: thin servicers, the shared interceptors, one composition root per role."""
