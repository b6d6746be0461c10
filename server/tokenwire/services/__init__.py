"""One thin servicer per proto service: protobuf in → domain call → protobuf out."""
