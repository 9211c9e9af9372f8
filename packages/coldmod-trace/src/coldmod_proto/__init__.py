"""Generated protobuf and gRPC modules of the Coldmod wire protocol (see protos/)."""
