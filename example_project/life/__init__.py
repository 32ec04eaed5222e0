"""The distributed Game of Life: cells compute, the server only relays."""
