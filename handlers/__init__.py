"""One module per user intent: `async def handle(cmd, uow, *, ctx) -> Result`."""
