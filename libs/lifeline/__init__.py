"""Lifeline's shared library: the domain kernel, the adapters, the gRPC edge, the service
runtime and the developer tooling (libs/README.md draws the floors)."""

import os

# gRPC's fork handlers are for a process that forks and goes on using gRPC in the child;
# Lifeline's processes fork only to exec (the developer stack's pg_ctl, run as another
# user), and with the handlers on such a child can crash before it execs when gRPC threads
# are busy (SIGSEGV, "epoll_wait error: Bad file descriptor"; grpc/grpc#13873). Off unless
# set otherwise; read when gRPC initialises, so here, before anything imports it.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
