"""certflow worker: keeps a store's time and delivers its effects (worker.md)."""

__all__: list[str] = []
