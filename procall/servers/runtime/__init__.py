"""The server runtime every role shares.

The grpc.aio server, the app lifecycle, the error interceptor and ``procall serve``.
"""
