"""The links between UCServers: PeerService streams, the peer servicer and the event router."""
