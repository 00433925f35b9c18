"""The web console: the city's live picture for a command centre, a client of the four
services' public gRPC APIs."""
