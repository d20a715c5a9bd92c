"""gearcam's runtime: RedisAI 1.2 (and RedisGears 1.2) commands served in front of a stock redis-server."""
