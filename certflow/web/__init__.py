"""certflow.web: the console, an ASGI application a host mounts (web.md)."""

__all__: list[str] = []
