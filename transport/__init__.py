# llmos.transport
__all__: list[str] = []
