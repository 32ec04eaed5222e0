"""A chat: rooms by name, messages relayed to everyone in the room."""
