"""bullproof's chaos side: the topologies the system runs on and the faults."""
