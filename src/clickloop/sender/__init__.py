"""The S2S dispatcher: claims queued deliveries and sends them with aiohttp."""
