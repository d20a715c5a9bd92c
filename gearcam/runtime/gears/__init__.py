"""RedisGears 1.2 (Python) for the gearcam runtime: see docs/gears.md.

Two sides. In the runtime process: service (registrations, stream readers, executions),
workers (the worker processes and their channel), lifecycle (RG.PYEXECUTE's session
logic, restore), sessions (persistence), owners (ACL rights for Gears code),
requirements (the Gears virtualenv), ai_calls (`redisAI` served by the AI service).
In each Gears worker process: worker (the process), script (a script's globals),
builder, engine (running steps), readers, redisai_api (`import redisAI`), link.
This package imports nothing itself, so a worker loads only what it needs.
"""
