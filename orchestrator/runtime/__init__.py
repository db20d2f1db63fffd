"""The processes of the stack: Triton server and its environment, local Valkey, allocator, failpoints."""
