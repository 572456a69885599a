"""Moving users between UCServers live: the peer calls that hand sessions over, the
coordinator of moves, rebalances and drains, and re-homing at login."""
