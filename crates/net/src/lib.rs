//! berth-net: bridges, veth pairs, IP address management, NAT and port publishing over
//! netlink, and name resolution between containers. It knows nothing of images.
